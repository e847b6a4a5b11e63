// Command benchctl is the Go side of bench/run.py: everything that needs a real
// Connect client or protobuf encoding, so the Python driver only starts
// processes, runs h2load and does arithmetic.
//
//	benchctl bodies     write the ListVms request bodies h2load posts
//	benchctl synth      write the ListVms page a seeded chcp would return
//	benchctl seed       create VMs through a server's CreateVm
//	benchctl dump       write a server's ListVms page to a file
//	benchctl check      ListVms/GetVmInfo over every protocol equal a file
//	benchctl delete-all delete every VM a server lists
//	benchctl lifecycle  create/boot/shutdown/delete cycles, latencies as JSON
//	benchctl direct     the same REST calls straight to a CH stand-in
//	benchctl steps      one operation on n VMs, one call at a time (callgrind mix)
//
// Each subcommand has its own flags (`benchctl <cmd> -h`).
package main

import (
	"fmt"
	"os"
)

type command struct {
	run  func(args []string) error
	help string
}

var commands = map[string]command{
	"bodies":     {cmdBodies, "write ListVms request bodies (Connect and gRPC framing)"},
	"synth":      {cmdSynth, "write a synthesized ListVmsResponse"},
	"seed":       {cmdSeed, "create VMs through CreateVm"},
	"dump":       {cmdDump, "write a server's ListVmsResponse"},
	"check":      {cmdCheck, "verify ListVms/GetVmInfo on every protocol against a file"},
	"delete-all": {cmdDeleteAll, "delete every listed VM"},
	"lifecycle":  {cmdLifecycle, "run create/boot/shutdown/delete cycles"},
	"direct":     {cmdDirect, "time the same REST calls directly on a CH stand-in"},
	"steps":      {cmdSteps, "one operation on n VMs, one call at a time"},
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	c, ok := commands[os.Args[1]]
	if !ok {
		usage()
	}
	if err := c.run(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "benchctl %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: benchctl <command> [flags]")
	for name, c := range commands {
		fmt.Fprintf(os.Stderr, "  %-11s %s\n", name, c.help)
	}
	os.Exit(2)
}
