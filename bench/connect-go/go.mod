// The connect-go peer and the Go helpers of `make bench` (seeding, checks,
// lifecycle load). Its own module so the daemon's build never sees Go code.
module chcp.local/bench

go 1.24.0

require (
	connectrpc.com/connect v1.19.1
	golang.org/x/net v0.47.0
	google.golang.org/protobuf v1.36.10
)

require golang.org/x/text v0.31.0 // indirect
