// Connect clients for every protocol/HTTP-version pair the benchmark uses,
// restricted to loopback targets.
package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/net/http2"

	"chcp.local/bench/gen/cloudhypervisor/v1/vmv1connect"
)

// variant is one way of calling the service.
type variant struct {
	name     string // "connect+h2c", ...
	protocol string // connect, grpc, grpcweb
	h2c      bool
}

var variants = []variant{
	{"connect+h2c", "connect", true},
	{"grpc+h2c", "grpc", true},
	{"grpcweb+h2c", "grpcweb", true},
	{"connect+http1", "connect", false},
	{"grpcweb+http1", "grpcweb", false},
}

// checkLoopback refuses any base URL that is not plain http on a loopback IP.
func checkLoopback(base string) error {
	u, err := url.Parse(base)
	if err != nil {
		return err
	}
	if u.Scheme != "http" {
		return fmt.Errorf("%s: only http:// URLs", base)
	}
	ip := net.ParseIP(u.Hostname())
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s: only loopback IP addresses", base)
	}
	return nil
}

func httpClient(h2c bool, conns int) *http.Client {
	if h2c {
		return &http.Client{Transport: &http2.Transport{
			AllowHTTP: true,
			DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
				return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
			},
		}}
	}
	return &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		DisableCompression:  true,
	}}
}

func newClient(base string, v variant, conns int) (vmv1connect.VmServiceClient, error) {
	if err := checkLoopback(base); err != nil {
		return nil, err
	}
	var opts []connect.ClientOption
	switch v.protocol {
	case "connect":
	case "grpc":
		opts = append(opts, connect.WithGRPC())
	case "grpcweb":
		opts = append(opts, connect.WithGRPCWeb())
	default:
		return nil, fmt.Errorf("unknown protocol %q", v.protocol)
	}
	return vmv1connect.NewVmServiceClient(httpClient(v.h2c, conns), base, opts...), nil
}

// defaultClient is Connect over h2c, the protocol the control operations use.
func defaultClient(base string, conns int) (vmv1connect.VmServiceClient, error) {
	return newClient(base, variants[0], conns)
}

// retryBusy runs call again while chcp answers resource_exhausted (its
// CHCP_MAX_CONCURRENT_STARTS admission limit), after a short jittered pause,
// as a well-behaved client would. It returns the number of retries.
func retryBusy(ctx context.Context, call func() error) (int, error) {
	for retries := 0; ; retries++ {
		err := call()
		if err == nil || connect.CodeOf(err) != connect.CodeResourceExhausted {
			return retries, err
		}
		pause := time.Duration(500+rand.IntN(1500)) * time.Microsecond
		select {
		case <-ctx.Done():
			return retries, err
		case <-time.After(pause):
		}
	}
}
