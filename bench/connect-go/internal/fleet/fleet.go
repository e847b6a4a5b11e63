// Package fleet describes the VMs the benchmarks work with, so that chcp (which
// gets them through its own CreateVm) and the connect-go peer (which is
// prefilled) hold the same content.
package fleet

import (
	"fmt"
	"path/filepath"
	"sort"

	vmv1 "chcp.local/bench/gen/cloudhypervisor/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Files the image directory must hold; bench/run.py creates them empty (the
// CH stand-in never reads them).
const (
	KernelFile = "vmlinux"
	DiskFile   = "rootfs.raw"
)

// ID is the vm_id of the i-th benchmark VM; prefix keeps runs apart.
func ID(prefix string, i int) string { return fmt.Sprintf("%s-%04d", prefix, i) }

// Config is a small but realistic VM configuration: kernel + cmdline, two
// vCPUs, 512 MiB, one read-only disk, serial off.
func Config(imageDir string) *vmv1.VmConfig {
	return &vmv1.VmConfig{
		Payload: &vmv1.PayloadConfig{
			Kernel:  filepath.Join(imageDir, KernelFile),
			Cmdline: "console=hvc0 root=/dev/vda ro quiet",
		},
		Cpus:   &vmv1.CpusConfig{BootVcpus: 2, MaxVcpus: 2},
		Memory: &vmv1.MemoryConfig{Size: 512 << 20},
		Disks: []*vmv1.DiskConfig{{
			Path:     filepath.Join(imageDir, DiskFile),
			Readonly: true,
		}},
		Serial: &vmv1.ConsoleConfig{Mode: vmv1.ConsoleMode_CONSOLE_MODE_OFF},
	}
}

// CreateRequest is what the seeding client sends for VM i.
func CreateRequest(prefix string, i int, imageDir string) *vmv1.CreateVmRequest {
	return &vmv1.CreateVmRequest{
		VmId:   ID(prefix, i),
		Config: Config(imageDir),
		Labels: map[string]string{"bench": prefix, "tier": []string{"web", "db", "batch"}[i%3]},
	}
}

// Synthesize builds, without any server, the ListVms page a freshly seeded
// chcp would return: used when chcp's API is not available yet.
func Synthesize(prefix string, n int, imageDir string) *vmv1.ListVmsResponse {
	now := timestamppb.Now()
	out := &vmv1.ListVmsResponse{}
	for i := 0; i < n; i++ {
		req := CreateRequest(prefix, i, imageDir)
		out.Vms = append(out.Vms, &vmv1.VmInfo{
			VmId:           req.VmId,
			Config:         req.Config,
			Labels:         req.Labels,
			State:          vmv1.VmState_VM_STATE_CREATED,
			VmmState:       "Created",
			VmmPid:         int32(100000 + i),
			CreatedAt:      now,
			UpdatedAt:      now,
			StateChangedAt: now,
		})
	}
	sort.Slice(out.Vms, func(a, b int) bool { return out.Vms[a].VmId < out.Vms[b].VmId })
	return out
}
