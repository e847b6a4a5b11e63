// The fixed request mix of the instruction counts (bench/callgrind_bench.py):
// one lifecycle operation on VMs prefix-<first> .. prefix-<first+n-1>, one
// call at a time, so that the daemon's work between two callgrind dumps is
// exactly n calls of that operation (and what they caused).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"connectrpc.com/connect"

	vmv1 "chcp.local/bench/gen/cloudhypervisor/v1"
	"chcp.local/bench/internal/fleet"
)

func cmdSteps(args []string) error {
	fs := flag.NewFlagSet("steps", flag.ExitOnError)
	base := fs.String("url", "", "server base URL")
	images := fs.String("image-dir", "", "image directory (absolute)")
	prefix := fs.String("prefix", "cg", "vm_id prefix")
	op := fs.String("op", "", "create, boot, shutdown, delete, info or list")
	first := fs.Int("first", 0, "index of the first VM")
	n := fs.Int("n", 10, "number of calls (one per VM; list: calls of ListVms)")
	pageSize := fs.Int("page-size", 10, "list: ListVms page size")
	vms := fs.Int("vms", 0, "info, list: round robin over this many VMs (0: one call per VM)")
	timeout := fs.Duration("timeout", 300*time.Second, "overall time limit")
	fs.Parse(args)
	if *op == "create" && *images == "" {
		return errors.New("-image-dir is required for create")
	}
	cl, err := defaultClient(*base, 1)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	for i := *first; i < *first+*n; i++ {
		id := fleet.ID(*prefix, i)
		if *vms > 0 {
			id = fleet.ID(*prefix, *first+(i-*first)%*vms)
		}
		var err error
		switch *op {
		case "create":
			_, err = cl.CreateVm(ctx, connect.NewRequest(fleet.CreateRequest(*prefix, i, *images)))
		case "boot":
			_, err = cl.BootVm(ctx, connect.NewRequest(&vmv1.BootVmRequest{VmId: id}))
		case "shutdown":
			_, err = cl.ShutdownVm(ctx, connect.NewRequest(&vmv1.ShutdownVmRequest{VmId: id, Force: true}))
		case "delete":
			_, err = cl.DeleteVm(ctx, connect.NewRequest(&vmv1.DeleteVmRequest{VmId: id}))
		case "info":
			_, err = cl.GetVmInfo(ctx, connect.NewRequest(&vmv1.GetVmInfoRequest{VmId: id}))
		case "list":
			_, err = cl.ListVms(ctx, connect.NewRequest(&vmv1.ListVmsRequest{PageSize: uint32(*pageSize)}))
		default:
			return fmt.Errorf("unknown -op %q", *op)
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", *op, id, err)
		}
	}
	return nil
}
