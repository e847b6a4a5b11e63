// The data subcommands: request bodies for h2load, the synthesized or seeded
// VM table, and the check that both servers answer with the same content.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	vmv1 "chcp.local/bench/gen/cloudhypervisor/v1"
	"chcp.local/bench/internal/fleet"
)

func writeFile(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// cmdBodies writes listvms.connect.bin (the bare message, Connect unary) and
// listvms.grpc.bin (the same message in a 5-byte gRPC envelope).
func cmdBodies(args []string) error {
	fs := flag.NewFlagSet("bodies", flag.ExitOnError)
	dir := fs.String("dir", ".", "output directory")
	pageSize := fs.Uint("page-size", 10, "ListVmsRequest.page_size")
	fs.Parse(args)
	msg, err := proto.Marshal(&vmv1.ListVmsRequest{PageSize: uint32(*pageSize)})
	if err != nil {
		return err
	}
	env := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(env[1:5], uint32(len(msg)))
	copy(env[5:], msg)
	if err := writeFile(filepath.Join(*dir, "listvms.connect.bin"), msg); err != nil {
		return err
	}
	return writeFile(filepath.Join(*dir, "listvms.grpc.bin"), env)
}

func cmdSynth(args []string) error {
	fs := flag.NewFlagSet("synth", flag.ExitOnError)
	n := fs.Int("n", 10, "number of VMs")
	prefix := fs.String("prefix", "bench", "vm_id prefix")
	images := fs.String("image-dir", "", "image directory (absolute)")
	out := fs.String("out", "", "output file")
	fs.Parse(args)
	if *out == "" || *images == "" {
		return errors.New("-out and -image-dir are required")
	}
	b, err := proto.Marshal(fleet.Synthesize(*prefix, *n, *images))
	if err != nil {
		return err
	}
	return writeFile(*out, b)
}

// cmdSeed creates VMs prefix-0000.. through CreateVm, a few at a time.
func cmdSeed(args []string) error {
	fs := flag.NewFlagSet("seed", flag.ExitOnError)
	base := fs.String("url", "", "server base URL")
	n := fs.Int("n", 10, "number of VMs")
	prefix := fs.String("prefix", "bench", "vm_id prefix")
	images := fs.String("image-dir", "", "image directory (absolute)")
	conc := fs.Int("concurrency", 4, "concurrent CreateVm calls")
	timeout := fs.Duration("timeout", 120*time.Second, "overall time limit")
	fs.Parse(args)
	cl, err := defaultClient(*base, *conc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < *conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= *n || ctx.Err() != nil {
					return
				}
				_, err := retryBusy(ctx, func() error {
					_, err := cl.CreateVm(ctx, connect.NewRequest(fleet.CreateRequest(*prefix, i, *images)))
					return err
				})
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("CreateVm %s: %w", fleet.ID(*prefix, i), err)
					}
					mu.Unlock()
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

func listAll(ctx context.Context, base string) ([]*vmv1.VmInfo, error) {
	cl, err := defaultClient(base, 1)
	if err != nil {
		return nil, err
	}
	var all []*vmv1.VmInfo
	token := ""
	for page := 0; page < 10000; page++ {
		resp, err := cl.ListVms(ctx, connect.NewRequest(&vmv1.ListVmsRequest{PageSize: 1000, PageToken: token}))
		if err != nil {
			return nil, err
		}
		all = append(all, resp.Msg.Vms...)
		token = resp.Msg.NextPageToken
		if token == "" {
			return all, nil
		}
	}
	return nil, errors.New("ListVms paging does not end")
}

func cmdDump(args []string) error {
	fs := flag.NewFlagSet("dump", flag.ExitOnError)
	base := fs.String("url", "", "server base URL")
	out := fs.String("out", "", "output file")
	fs.Parse(args)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	vms, err := listAll(ctx, *base)
	if err != nil {
		return err
	}
	b, err := proto.Marshal(&vmv1.ListVmsResponse{Vms: vms})
	if err != nil {
		return err
	}
	return writeFile(*out, b)
}

// withoutRefreshed returns a copy of page without the fields chcp's
// GetVmInfo refreshes from the VMM's vm.info (and so may change between two
// reads): memory_actual_size, vmm_state, updated_at.
func withoutRefreshed(vms ...*vmv1.VmInfo) []*vmv1.VmInfo {
	out := make([]*vmv1.VmInfo, len(vms))
	for i, vm := range vms {
		c := proto.Clone(vm).(*vmv1.VmInfo)
		c.MemoryActualSize, c.VmmState, c.UpdatedAt = 0, "", nil
		out[i] = c
	}
	return out
}

func sameVMs(relaxed bool, got, want []*vmv1.VmInfo) bool {
	if relaxed {
		got, want = withoutRefreshed(got...), withoutRefreshed(want...)
	}
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			return false
		}
	}
	return true
}

// cmdCheck calls ListVms (page_size = all) and GetVmInfo over every protocol
// variant and requires the answers to equal the expected page: the load test
// only counts HTTP statuses, this proves those responses carry the data.
func cmdCheck(args []string) error {
	fs := flag.NewFlagSet("check", flag.ExitOnError)
	base := fs.String("url", "", "server base URL")
	expect := fs.String("expect", "", "binary ListVmsResponse the server must return")
	relaxed := fs.Bool("relaxed", false, "ignore the fields GetVmInfo refreshes (memory_actual_size, vmm_state, updated_at)")
	noGet := fs.Bool("no-get", false, "check ListVms only (GetVmInfo may refresh what it returns)")
	fs.Parse(args)
	b, err := os.ReadFile(*expect)
	if err != nil {
		return err
	}
	var want vmv1.ListVmsResponse
	if err := proto.Unmarshal(b, &want); err != nil {
		return err
	}
	if len(want.Vms) == 0 {
		return errors.New("expected page is empty")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bad := 0
	for _, v := range variants {
		cl, err := newClient(*base, v, 1)
		if err != nil {
			return err
		}
		got, err := cl.ListVms(ctx, connect.NewRequest(&vmv1.ListVmsRequest{PageSize: uint32(len(want.Vms))}))
		status := "ok"
		switch {
		case err != nil:
			status = "ListVms: " + err.Error()
		case got.Msg.NextPageToken != "" || !sameVMs(*relaxed, got.Msg.Vms, want.Vms):
			status = fmt.Sprintf("ListVms: page differs (%d VMs, want %d)", len(got.Msg.Vms), len(want.Vms))
		case *noGet:
		default:
			one, err := cl.GetVmInfo(ctx, connect.NewRequest(&vmv1.GetVmInfoRequest{VmId: want.Vms[0].VmId}))
			if err != nil {
				status = "GetVmInfo: " + err.Error()
			} else if !sameVMs(*relaxed, []*vmv1.VmInfo{one.Msg.Vm}, want.Vms[:1]) {
				status = "GetVmInfo: VM differs"
			}
		}
		if status != "ok" {
			bad++
		}
		fmt.Printf("check %-14s %s\n", v.name, status)
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d protocol variants failed", bad, len(variants))
	}
	return nil
}

func cmdDeleteAll(args []string) error {
	fs := flag.NewFlagSet("delete-all", flag.ExitOnError)
	base := fs.String("url", "", "server base URL")
	conc := fs.Int("concurrency", 8, "concurrent DeleteVm calls")
	timeout := fs.Duration("timeout", 120*time.Second, "overall time limit")
	pidsOut := fs.String("pids-out", "", "write the VMM pids found (one a line) here first")
	fs.Parse(args)
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	vms, err := listAll(ctx, *base)
	if err != nil {
		return err
	}
	if *pidsOut != "" {
		var b []byte
		for _, vm := range vms {
			if vm.VmmPid > 0 {
				b = fmt.Appendf(b, "%d\n", vm.VmmPid)
			}
		}
		if err := writeFile(*pidsOut, b); err != nil {
			return err
		}
	}
	cl, err := defaultClient(*base, *conc)
	if err != nil {
		return err
	}
	ids := make(chan string, len(vms))
	for _, vm := range vms {
		ids <- vm.VmId
	}
	close(ids)
	var failed atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < *conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ids {
				if _, err := cl.DeleteVm(ctx, connect.NewRequest(&vmv1.DeleteVmRequest{VmId: id})); err != nil {
					failed.Add(1)
					fmt.Fprintf(os.Stderr, "DeleteVm %s: %v\n", id, err)
				}
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d of %d deletes failed", f, len(vms))
	}
	return nil
}
