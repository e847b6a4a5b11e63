// Command peer is the connect-go reference server of `make bench`: the same
// VmService reads (ListVms, GetVmInfo) as chcp, over an in-memory map of VMs,
// served with connect-go's stock handler (Connect, gRPC and gRPC-Web) on h2c
// and HTTP/1.1. It is what a straightforward Go implementation of chcp's read
// path costs, measured on the same machine in the same run.
//
// The VMs are loaded from a binary ListVmsResponse (-data): the page chcp
// itself returned after bench/run.py created the VMs through chcp's API, so
// both servers serialise identical content. The write RPCs are unimplemented:
// the benchmark never sends them here.
package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"sync"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"google.golang.org/protobuf/proto"

	vmv1 "chcp.local/bench/gen/cloudhypervisor/v1"
	"chcp.local/bench/gen/cloudhypervisor/v1/vmv1connect"
)

const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// store is the VM table: a map for GetVmInfo and the ids in order for ListVms.
type store struct {
	mu   sync.RWMutex
	byID map[string]*vmv1.VmInfo
	ids  []string // sorted
}

func newStore(vms []*vmv1.VmInfo) *store {
	s := &store{byID: make(map[string]*vmv1.VmInfo, len(vms))}
	for _, vm := range vms {
		s.byID[vm.VmId] = vm
		s.ids = append(s.ids, vm.VmId)
	}
	sort.Strings(s.ids)
	return s
}

type server struct {
	vmv1connect.UnimplementedVmServiceHandler
	st *store
}

func (s *server) GetVmInfo(ctx context.Context, req *connect.Request[vmv1.GetVmInfoRequest]) (*connect.Response[vmv1.GetVmInfoResponse], error) {
	id := req.Msg.GetVmId()
	if id == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("vm_id is required"))
	}
	s.st.mu.RLock()
	vm := s.st.byID[id]
	s.st.mu.RUnlock()
	if vm == nil {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("vm %q not found", id))
	}
	return connect.NewResponse(&vmv1.GetVmInfoResponse{Vm: vm}), nil
}

// matches applies ListVms' state and label filters.
func matches(vm *vmv1.VmInfo, states []vmv1.VmState, labels map[string]string) bool {
	if len(states) > 0 {
		ok := false
		for _, st := range states {
			if vm.State == st {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for k, v := range labels {
		if got, ok := vm.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func (s *server) ListVms(ctx context.Context, req *connect.Request[vmv1.ListVmsRequest]) (*connect.Response[vmv1.ListVmsResponse], error) {
	m := req.Msg
	size := int(m.GetPageSize())
	if size == 0 {
		size = defaultPageSize
	}
	if size > maxPageSize {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("page_size must be at most %d", maxPageSize))
	}
	after := ""
	if m.GetPageToken() != "" {
		b, err := base64.RawURLEncoding.DecodeString(m.GetPageToken())
		if err != nil || len(b) == 0 {
			return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("invalid page_token"))
		}
		after = string(b)
	}
	s.st.mu.RLock()
	defer s.st.mu.RUnlock()
	start := sort.SearchStrings(s.st.ids, after)
	if after != "" && start < len(s.st.ids) && s.st.ids[start] == after {
		start++
	}
	out := &vmv1.ListVmsResponse{Vms: make([]*vmv1.VmInfo, 0, min(size, len(s.st.ids)-start))}
	for i := start; i < len(s.st.ids); i++ {
		vm := s.st.byID[s.st.ids[i]]
		if !matches(vm, m.GetStates(), m.GetLabels()) {
			continue
		}
		if len(out.Vms) == size {
			out.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(out.Vms[size-1].VmId))
			break
		}
		out.Vms = append(out.Vms, vm)
	}
	return connect.NewResponse(out), nil
}

func load(path string) ([]*vmv1.VmInfo, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var page vmv1.ListVmsResponse
	if err := proto.Unmarshal(b, &page); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return page.Vms, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "loopback address to listen on (port 0 picks one)")
	data := flag.String("data", "", "binary ListVmsResponse holding the VMs to serve")
	portFile := flag.String("port-file", "", "write the chosen port here once listening")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("connect-go peer: ")

	if *data == "" {
		log.Fatal("-data is required")
	}
	vms, err := load(*data)
	if err != nil {
		log.Fatal(err)
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil || net.ParseIP(host) == nil || !net.ParseIP(host).IsLoopback() {
		log.Fatalf("-addr %q: only loopback addresses are allowed", *addr)
	}

	mux := http.NewServeMux()
	path, handler := vmv1connect.NewVmServiceHandler(&server{st: newStore(vms)})
	mux.Handle(path, handler)
	srv := &http.Server{
		Handler:           h2c.NewHandler(mux, &http2.Server{}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if *portFile != "" {
		tmp := *portFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(fmt.Sprintf("%d\n", port)), 0o644); err != nil {
			log.Fatal(err)
		}
		if err := os.Rename(tmp, *portFile); err != nil {
			log.Fatal(err)
		}
	}
	log.Printf("serving %d VMs on %s", len(vms), ln.Addr())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
