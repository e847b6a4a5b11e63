// The baseline for "time chcp adds": the REST calls behind each lifecycle
// operation sent straight to a CH stand-in process, started the way chcp
// starts one (API socket bound by the parent and passed as fd 3, event
// monitor as fd 4, clean environment), over one keep-alive connection.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// chConfig is the vm.create body for the benchmark VM, in Cloud
// Hypervisor's JSON (what chcp derives from fleet.Config).
func chConfig(imageDir, vmDir string) []byte {
	cfg := map[string]any{
		"payload": map[string]any{
			"kernel":  filepath.Join(imageDir, "vmlinux"),
			"cmdline": "console=hvc0 root=/dev/vda ro quiet",
		},
		"cpus":    map[string]any{"boot_vcpus": 2, "max_vcpus": 2},
		"memory":  map[string]any{"size": 512 << 20},
		"disks":   []any{map[string]any{"path": filepath.Join(imageDir, "rootfs.raw"), "readonly": true}},
		"serial":  map[string]any{"mode": "Off"},
		"console": map[string]any{"mode": "File", "file": filepath.Join(vmDir, "console.log")},
	}
	b, _ := json.Marshal(cfg)
	return b
}

type standin struct {
	cmd    *exec.Cmd
	client *http.Client
	dir    string
}

// startStandin binds dir/api.sock, opens dir/events.json and execs the
// binary with them as fds 3 and 4.
func startStandin(binary, dir string) (*standin, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "api.sock")
	_ = os.Remove(sock)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false)
	lf, err := ln.File()
	ln.Close()
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	ev, err := os.OpenFile(filepath.Join(dir, "events.json"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer ev.Close()
	logf, err := os.OpenFile(filepath.Join(dir, "stderr.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(binary, "--api-socket", "fd=3", "--event-monitor", "fd=4",
		"--log-file", filepath.Join(dir, "vmm.log"), "-v", "--no-shutdown")
	cmd.Env = []string{}
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.ExtraFiles = []*os.File{lf, ev}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	cl := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
	}, Timeout: 30 * time.Second}
	return &standin{cmd: cmd, client: cl, dir: dir}, nil
}

func (s *standin) call(ctx context.Context, method, endpoint string, body []byte) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://localhost/api/v1/"+endpoint, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, endpoint, resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}

// stop asks the VMM to exit and waits for it; kills it if it does not go.
func (s *standin) stop(ctx context.Context) error {
	err := s.call(ctx, http.MethodPut, "vmm.shutdown", nil)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
		return errors.New("stand-in did not exit after vmm.shutdown")
	}
	s.client.CloseIdleConnections()
	// A 200 lost to the exit counts as success, as in chcp.
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		var ne net.Error
		if !errors.As(err, &ne) {
			return err
		}
	}
	return nil
}

func cmdDirect(args []string) error {
	fs := flag.NewFlagSet("direct", flag.ExitOnError)
	binary := fs.String("standin", "", "path of the CH stand-in binary")
	images := fs.String("image-dir", "", "image directory (absolute)")
	work := fs.String("work-dir", "", "directory for per-VM directories")
	conc := fs.Int("concurrency", 1, "concurrent cycles")
	dur := fs.Duration("duration", 5*time.Second, "how long to start new cycles")
	out := fs.String("out", "-", "JSON result file")
	fs.Parse(args)
	if *binary == "" || *images == "" || *work == "" {
		return errors.New("-standin, -image-dir and -work-dir are required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *dur+60*time.Second)
	defer cancel()
	smp := newSamples()
	var cycles, errs atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	deadline := start.Add(*dur)
	var seq atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < *conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil && errs.Load() < 20 {
				dir := filepath.Join(*work, fmt.Sprintf("d-%06d", seq.Add(1)))
				if err := directCycle(ctx, *binary, *images, dir, smp); err != nil {
					firstErr.CompareAndSwap(nil, err.Error())
					errs.Add(1)
					continue
				}
				os.RemoveAll(dir)
				cycles.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	res := lifecycleResult{
		Concurrency: *conc, Cycles: cycles.Load(), ElapsedS: elapsed.Seconds(),
		CyclesPerS: float64(cycles.Load()) / elapsed.Seconds(), Errors: errs.Load(),
		Ops: smp.summarize(),
	}
	if v := firstErr.Load(); v != nil {
		res.FirstError = v.(string)
	}
	if err := writeJSON(*out, res); err != nil {
		return err
	}
	if res.Cycles == 0 {
		return fmt.Errorf("no cycle completed: %s", res.FirstError)
	}
	return nil
}

// directCycle times, for one VMM, the REST calls (and process start and
// exit) behind each chcp operation. Composite samples carry chcp's operation
// names, so the driver subtracts like from like:
//
//	create   = spawn until vmm.ping answers + vm.create
//	boot     = vm.boot
//	shutdown = vm.shutdown
//	delete   = vmm.shutdown until the process is gone
//
// The single calls are recorded too (spawn+ping, vm.create, vm.info, ...).
func directCycle(ctx context.Context, binary, images, dir string, smp *samples) error {
	t0 := time.Now()
	s, err := startStandin(binary, dir)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		return err
	}
	step := func(op, method, endpoint string, body []byte) (time.Duration, error) {
		t := time.Now()
		if err := s.call(ctx, method, endpoint, body); err != nil {
			return 0, err
		}
		d := time.Since(t)
		smp.add(op, d)
		return d, nil
	}
	if _, err := step("vmm.ping", http.MethodGet, "vmm.ping", nil); err != nil {
		return fail(err)
	}
	spawn := time.Since(t0)
	smp.add("spawn+ping", spawn)
	create, err := step("vm.create", http.MethodPut, "vm.create", chConfig(images, dir))
	if err != nil {
		return fail(err)
	}
	smp.add("create", spawn+create)
	if _, err := step("vm.info", http.MethodGet, "vm.info", nil); err != nil {
		return fail(err)
	}
	boot, err := step("vm.boot", http.MethodPut, "vm.boot", nil)
	if err != nil {
		return fail(err)
	}
	smp.add("boot", boot)
	shut, err := step("vm.shutdown", http.MethodPut, "vm.shutdown", nil)
	if err != nil {
		return fail(err)
	}
	smp.add("shutdown", shut)
	t := time.Now()
	if err := s.stop(ctx); err != nil {
		return err
	}
	smp.add("delete", time.Since(t))
	return nil
}
