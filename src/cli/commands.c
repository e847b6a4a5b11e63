/*
 * commands.c - the command table of chcpctl: every command, option and help
 * text in one place. The parser (options.c), `--help`, the bash and zsh
 * completion scripts and the man page are all generated from these rows, so
 * adding an option here is all it takes for it to be parsed, documented and
 * completed.
 *
 * Text conventions (rendered by options.c for --help and gen_man.c for roff):
 * paragraphs are separated by a blank line; a paragraph whose lines start
 * with two spaces is shown verbatim (examples, formats).
 */
#include "cli/cli.h"

#include <string.h>

const char cli_program_description[] =
    "chcpctl talks to a chcp daemon (chcp-api), the per-host control plane that runs one "
    "Cloud Hypervisor process per virtual machine. Every command is one or a few "
    "cloudhypervisor.v1.VmService calls over the Connect protocol, on a Unix socket, TCP, "
    "or TLS.\n\n"
    "Output is a table or text for people by default; -o json prints the API's own JSON "
    "(proto3 JSON mapping, one document per line), which is stable: fields are only ever "
    "added. Errors go to stderr, and the exit status says what kind of error it was (see "
    "EXIT STATUS).\n\n"
    "A console command arrives with the daemon's streaming API (issue 11); until then, with "
    "the default console configuration the guest's console output is kept on the daemon's "
    "host in STATE_DIR/vms/VM/console.log.";

const char cli_environment_help[] =
    "CHCPCTL_ENDPOINT: the endpoint when --endpoint is not given.\n"
    "CHCPCTL_CACERT, CHCPCTL_CERT, CHCPCTL_KEY: defaults for --cacert, --cert and --key.";

const cli_option cli_global_options[] = {
    {"endpoint", 'e', "URL", 0, CLI_COMPLETE_NONE,
     "the daemon: unix:///path/api.sock (or any absolute path), http://host:port, "
     "https://host:port, or host:port; an http(s) URL may end with a path prefix. "
     "Default: $CHCPCTL_ENDPOINT, else " CLIENT_DEFAULT_ENDPOINT},
    {"output", 'o', "FORMAT", 0, CLI_COMPLETE_OUTPUT,
     "output format, table or json: table (the default) is for people, json is the API's "
     "JSON, one document per line"},
    {"request-timeout", 0, "DURATION", 0, CLI_COMPLETE_NONE,
     "give up on each call (connecting included) after DURATION; also sent to the "
     "daemon, which then stops working on it. 0: no limit. Default: 2m"},
    {"cacert", 0, "FILE", 0, CLI_COMPLETE_FILE,
     "https: trust the CA certificates in FILE (PEM) instead of the system's"},
    {"cert", 0, "FILE", 0, CLI_COMPLETE_FILE,
     "https: present this client certificate (PEM, chain allowed) for mutual TLS"},
    {"key", 0, "FILE", 0, CLI_COMPLETE_FILE,
     "https: the client certificate's private key (PEM); default: in the --cert file"},
    {"tls-server-name", 0, "NAME", 0, CLI_COMPLETE_NONE,
     "https: verify the server's certificate for NAME instead of the endpoint's host"},
    {"help", 'h', NULL, 0, CLI_COMPLETE_NONE, "show help (for a command: chcpctl COMMAND --help)"},
    {"version", 0, NULL, 0, CLI_COMPLETE_NONE, "print chcpctl's version"},
    {0},
};

static const cli_option create_options[] = {
    {"file", 'f', "FILE", 0, CLI_COMPLETE_FILE,
     "read the VM from a YAML or JSON file (- for standard input); flags given too "
     "override its values"},
    {"kernel", 0, "PATH", 0, CLI_COMPLETE_FILE, "kernel to boot (vmlinux or bzImage)"},
    {"initramfs", 0, "PATH", 0, CLI_COMPLETE_FILE, "initramfs"},
    {"cmdline", 0, "TEXT", 0, CLI_COMPLETE_NONE, "kernel command line"},
    {"firmware", 0, "PATH", 0, CLI_COMPLETE_FILE, "firmware to boot instead of a kernel"},
    {"cpus", 0, "N", 0, CLI_COMPLETE_NONE, "vCPUs at boot (default 1)"},
    {"max-cpus", 0, "N", 0, CLI_COMPLETE_NONE, "most vCPUs (hotplug limit; default: --cpus)"},
    {"memory", 0, "SIZE", 0, CLI_COMPLETE_NONE,
     "guest RAM: bytes, or with K, M, G, T (powers of 1024; default 512M)"},
    {"disk", 0, "SPEC", CLI_OPT_REPEAT, CLI_COMPLETE_FILE,
     "add a disk: its PATH, then comma-separated settings: readonly, direct, id=ID, "
     "serial=S, image-type=raw|qcow2|fixed-vhd|vhdx, num-queues=N, queue-size=N "
     "(/img/root.raw,readonly,image-type=raw); repeatable, in guest order"},
    {"net", 0, "SPEC", CLI_OPT_REPEAT, CLI_COMPLETE_NONE,
     "add a network device: an existing TAP device, then comma-separated settings: mac=MAC, "
     "host-mac=MAC, ip=IP, mask=MASK, mtu=N, id=ID, num-queues=N, queue-size=N "
     "(tap0,mac=52:54:00:12:34:56); repeatable"},
    {"label", 'l', "KEY=VALUE", CLI_OPT_REPEAT, CLI_COMPLETE_NONE, "add a label; repeatable"},
    {"console", 0, "MODE", 0, CLI_COMPLETE_NONE,
     "virtio console: off, null, tty, pty or file (default: file, console.log in the VM's "
     "directory)"},
    {"serial", 0, "MODE", 0, CLI_COMPLETE_NONE,
     "serial port: off, null, tty, pty, file or socket (default null; the file and socket "
     "are in the VM's directory)"},
    {"boot", 0, NULL, 0, CLI_COMPLETE_NONE, "boot the VM once it is created"},
    {"dry-run", 0, NULL, 0, CLI_COMPLETE_NONE,
     "print the CreateVm request as JSON and exit without contacting the daemon"},
    {0},
};

static const cli_option list_options[] = {
    {"state", 's', "STATE", CLI_OPT_REPEAT, CLI_COMPLETE_STATE,
     "only VMs in this state; repeatable or comma-separated"},
    {"label", 'l', "KEY=VALUE", CLI_OPT_REPEAT, CLI_COMPLETE_NONE,
     "only VMs carrying this label; repeatable (all must match)"},
    {"quiet", 'q', NULL, 0, CLI_COMPLETE_NONE, "print only the VM ids"},
    {"no-headers", 0, NULL, 0, CLI_COMPLETE_NONE, "leave out the header line"},
    {"page-size", 0, "N", 0, CLI_COMPLETE_NONE,
     "VMs per ListVms call, 1-1000 (default 1000); every page is fetched either way"},
    {0},
};

static const cli_option shutdown_options[] = {
    {"force", 0, NULL, 0, CLI_COMPLETE_NONE,
     "stop the guest at once instead of pressing the ACPI power button"},
    {"grace", 0, "DURATION", 0, CLI_COMPLETE_NONE,
     "how long the guest may take to power off before it is forced (daemon default 30s)"},
    {0},
};

static const cli_option delete_options[] = {
    {"ignore-not-found", 0, NULL, 0, CLI_COMPLETE_NONE,
     "succeed when the VM does not exist (for scripts that clean up)"},
    {0},
};

static const cli_option wait_options[] = {
    {"for", 0, "STATE[,STATE...]", 0, CLI_COMPLETE_STATE,
     "the state(s) to wait for; 'deleted' waits until the VM is gone. Required"},
    {"timeout", 't', "DURATION", 0, CLI_COMPLETE_NONE,
     "give up after DURATION with exit status 6; 0: wait forever. Default: 60s"},
    {0},
};

static const cli_option watch_options[] = {
    {"label", 'l', "KEY=VALUE", CLI_OPT_REPEAT, CLI_COMPLETE_NONE,
     "only VMs carrying this label (when no VM is named); repeatable"},
    {"interval", 0, "DURATION", 0, CLI_COMPLETE_NONE, "how often to poll (default 1s)"},
    {"count", 'n', "N", 0, CLI_COMPLETE_NONE, "exit after N events"},
    {0},
};

static const cli_option no_options[] = {{0}};

const cli_command cli_commands[] = {
    {"create", NULL, "[VM]", 0, 1, CLI_COMPLETE_NONE, "create a VM (and optionally boot it)",
     "Creates a VM from a file (-f), from flags, or both: flags override the file's values, "
     "--disk, --net and --label add to its lists. The VM id comes from the argument, else "
     "from the file's vmId; without either the daemon picks one. Paths are paths on the "
     "daemon's host and must lie in its image directories. Creating starts the VM's Cloud "
     "Hypervisor process with the configuration; nothing boots without --boot.\n\n"
     "The file is a CreateVmRequest in YAML or JSON (the API's field names, camelCase or "
     "snake_case). It is checked before anything is sent: an unknown field, a value of the "
     "wrong type or an unknown enum name is an error naming the field. Enum values may be "
     "written short and in any case (mode: pty for CONSOLE_MODE_PTY), and memory sizes "
     "(fields named size or ending in _size) take K, M, G and T suffixes:\n\n"
     "  vmId: web-1\n"
     "  labels: {app: web}\n"
     "  config:\n"
     "    payload: {kernel: /var/lib/images/vmlinux, cmdline: console=hvc0}\n"
     "    cpus: {bootVcpus: 2}\n"
     "    memory: {size: 1G}\n"
     "    disks:\n"
     "      - {path: /var/lib/images/root.img, readonly: true}\n\n"
     "With an existing id, the existing VM is returned if the configuration is identical, "
     "and the call fails with 'already exists' (exit status 8) otherwise.",
     create_options, cmd_create, false},
    {"get", "show", "VM...", 1, CLI_MANY, CLI_COMPLETE_VM, "show VMs in detail",
     "Shows each VM: state and why, its Cloud Hypervisor process, times, labels and "
     "configuration. With -o json, one VmInfo per line.",
     no_options, cmd_vm_call, false},
    {"list", "ls", "", 0, 0, CLI_COMPLETE_NONE, "list VMs",
     "Lists VMs ordered by id, one per line, optionally filtered by state and labels; all "
     "pages are fetched. With -o json, a single ListVmsResponse holding every VM.",
     list_options, cmd_list, false},
    {"boot", "start", "VM...", 1, CLI_MANY, CLI_COMPLETE_VM, "boot VMs",
     "Boots created or shut-down VMs and prints each VM's new state. Booting a running VM "
     "succeeds and changes nothing.",
     no_options, cmd_vm_call, false},
    {"shutdown", "stop", "VM...", 1, CLI_MANY, CLI_COMPLETE_VM, "shut VMs down",
     "Presses the ACPI power button and waits for the guest to power off, forcing it after "
     "the grace period; --force stops the guest at once. The VM keeps its configuration "
     "and can be booted again.",
     shutdown_options, cmd_shutdown, false},
    {"pause", NULL, "VM...", 1, CLI_MANY, CLI_COMPLETE_VM, "pause VMs' vCPUs",
     "Pauses running VMs.", no_options, cmd_vm_call, false},
    {"resume", NULL, "VM...", 1, CLI_MANY, CLI_COMPLETE_VM, "resume paused VMs",
     "Resumes paused VMs.", no_options, cmd_vm_call, false},
    {"reboot", NULL, "VM...", 1, CLI_MANY, CLI_COMPLETE_VM, "reboot VMs",
     "Reboots running or paused VMs inside their Cloud Hypervisor process.", no_options,
     cmd_vm_call, false},
    {"delete", "rm", "VM...", 1, CLI_MANY, CLI_COMPLETE_VM, "delete VMs",
     "Stops each VM's Cloud Hypervisor process, whatever the VM's state, and removes its "
     "files.",
     delete_options, cmd_vm_call, false},
    {"wait", NULL, "VM", 1, 1, CLI_COMPLETE_VM, "wait until a VM reaches a state",
     "Waits until the VM is in one of the --for states and prints it. Fails at once (exit "
     "status 4) when the VM is FAILED or CRASHED and that is not a wanted state, since only "
     "a delete leaves those states, and with exit status 3 when the VM is deleted while "
     "waited for (unless waiting for 'deleted').\n\n"
     "Today the daemon has no event stream, so wait polls GetVmInfo, from every 50 ms "
     "backing off to every second; it will follow the daemon's WatchVmEvents stream once "
     "that exists, with the same behaviour. A daemon that restarts meanwhile is polled "
     "again.",
     wait_options, cmd_wait, false},
    {"watch", NULL, "[VM...]", 0, CLI_MANY, CLI_COMPLETE_VM, "print VM changes as they happen",
     "Prints the VMs (all, the named ones, or those with the labels), then one line per "
     "change: a VM appearing, changing state or being updated, or disappearing. Runs until "
     "interrupted (exit status 0) or --count events. With -o json, one object per event: "
     "{\"type\":\"ADDED|CHANGED|DELETED\",\"vm\":VmInfo}.\n\n"
     "Today this polls (GetVmInfo or ListVms every --interval), so changes that undo each "
     "other between two polls are not seen; it will follow the daemon's WatchVmEvents "
     "stream once that exists.",
     watch_options, cmd_watch, false},
    {"completion", NULL, "SHELL", 1, 1, CLI_COMPLETE_SHELL,
     "print a shell completion script (bash or zsh)",
     "Prints the completion script for bash or zsh. It completes commands, options, states "
     "and, by asking the daemon, VM ids. To enable it for the current shell:\n\n"
     "  source <(chcpctl completion bash)\n\n"
     "Packages install the same scripts (contrib/completion/ in the source tree).",
     no_options, cmd_completion, false},
    {"help", NULL, "[COMMAND]", 0, 1, CLI_COMPLETE_COMMAND, "show help for chcpctl or a command",
     "Shows the same help as chcpctl --help or chcpctl COMMAND --help.", no_options, cmd_help,
     false},
    {"version", NULL, "", 0, 0, CLI_COMPLETE_NONE, "print chcpctl's version",
     "Prints chcpctl's version and git revision.", no_options, cmd_version, false},
    {"__man", NULL, "", 0, 0, CLI_COMPLETE_NONE, "print the man page (roff)",
     "Prints chcpctl(1) in roff; docs/man/chcpctl.1 is its output.", no_options, cmd_man, true},
};

const size_t cli_n_commands = sizeof(cli_commands) / sizeof(cli_commands[0]);

const cli_command *cli_find_command(const char *name)
{
    for (size_t i = 0; i < cli_n_commands; i++) {
        const cli_command *c = &cli_commands[i];
        if (strcmp(c->name, name) == 0 || (c->alias && strcmp(c->alias, name) == 0))
            return c;
    }
    return NULL;
}
