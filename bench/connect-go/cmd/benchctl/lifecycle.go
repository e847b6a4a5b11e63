// The lifecycle load: workers run create -> boot -> shutdown(force) -> delete
// cycles through the API, each VM its own, and time every call.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	vmv1 "chcp.local/bench/gen/cloudhypervisor/v1"
	"chcp.local/bench/internal/fleet"
)

type lifecycleResult struct {
	Concurrency int                `json:"concurrency"`
	Cycles      int64              `json:"cycles"`
	ElapsedS    float64            `json:"elapsed_s"`
	CyclesPerS  float64            `json:"cycles_per_s"`
	Errors      int64              `json:"errors"`
	Retries     int64              `json:"busy_retries"`
	FirstError  string             `json:"first_error,omitempty"`
	Ops         map[string]summary `json:"ops"`
}

func cmdLifecycle(args []string) error {
	fs := flag.NewFlagSet("lifecycle", flag.ExitOnError)
	base := fs.String("url", "", "server base URL")
	images := fs.String("image-dir", "", "image directory (absolute)")
	prefix := fs.String("prefix", "cyc", "vm_id prefix")
	conc := fs.Int("concurrency", 1, "concurrent cycles")
	dur := fs.Duration("duration", 5*time.Second, "how long to start new cycles")
	maxCycles := fs.Int64("max-cycles", 100000, "stop after this many cycles")
	maxErrors := fs.Int64("max-errors", 20, "give up after this many failed calls")
	out := fs.String("out", "-", "JSON result file")
	fs.Parse(args)
	if *images == "" {
		return errors.New("-image-dir is required")
	}
	cl, err := defaultClient(*base, *conc)
	if err != nil {
		return err
	}
	// Calls may finish after the start window; give them a bounded tail.
	ctx, cancel := context.WithTimeout(context.Background(), *dur+60*time.Second)
	defer cancel()
	res := lifecycleResult{Concurrency: *conc}
	smp := newSamples()
	var cycles, errs, retries atomic.Int64
	var firstErr atomic.Value
	fail := func(op, id string, err error) {
		firstErr.CompareAndSwap(nil, fmt.Sprintf("%s %s: %v", op, id, err))
		if errs.Add(1) >= *maxErrors {
			cancel()
		}
	}
	// timed runs one call (retried while chcp is busy starting other VMs)
	// and records its latency, retries included, when it succeeds.
	timed := func(op, id string, call func() error) bool {
		t0 := time.Now()
		n, err := retryBusy(ctx, call)
		retries.Add(int64(n))
		if err != nil {
			fail(op, id, err)
			return false
		}
		smp.add(op, time.Since(t0))
		return true
	}
	start := time.Now()
	deadline := start.Add(*dur)
	var seq atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < *conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				n := seq.Add(1)
				if n > *maxCycles {
					return
				}
				id := fleet.ID(*prefix, int(n))
				req := fleet.CreateRequest(*prefix, int(n), *images)
				created := timed("create", id, func() error {
					_, err := cl.CreateVm(ctx, connect.NewRequest(req))
					return err
				})
				if !created {
					continue
				}
				ok := timed("boot", id, func() error {
					_, err := cl.BootVm(ctx, connect.NewRequest(&vmv1.BootVmRequest{VmId: id}))
					return err
				}) && timed("shutdown", id, func() error {
					_, err := cl.ShutdownVm(ctx, connect.NewRequest(&vmv1.ShutdownVmRequest{VmId: id, Force: true}))
					return err
				})
				// Always delete what was created, so no VMM is left behind.
				deleted := timed("delete", id, func() error {
					_, err := cl.DeleteVm(ctx, connect.NewRequest(&vmv1.DeleteVmRequest{VmId: id}))
					return err
				})
				if ok && deleted {
					cycles.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	res.Cycles = cycles.Load()
	res.ElapsedS = elapsed.Seconds()
	res.CyclesPerS = float64(res.Cycles) / elapsed.Seconds()
	res.Errors = errs.Load()
	res.Retries = retries.Load()
	if v := firstErr.Load(); v != nil {
		res.FirstError = v.(string)
	}
	res.Ops = smp.summarize()
	if err := writeJSON(*out, res); err != nil {
		return err
	}
	if res.Cycles == 0 {
		return fmt.Errorf("no cycle completed: %s", res.FirstError)
	}
	return nil
}
