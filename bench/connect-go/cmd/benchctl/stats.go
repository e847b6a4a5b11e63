// Latency samples and their summary, shared by lifecycle and direct.
package main

import (
	"encoding/json"
	"os"
	"sort"
	"sync"
	"time"
)

// samples collects durations per operation name; safe for concurrent use.
type samples struct {
	mu  sync.Mutex
	ops map[string][]time.Duration
}

func newSamples() *samples { return &samples{ops: map[string][]time.Duration{}} }

func (s *samples) add(op string, d time.Duration) {
	s.mu.Lock()
	s.ops[op] = append(s.ops[op], d)
	s.mu.Unlock()
}

type summary struct {
	N      int     `json:"n"`
	P50us  float64 `json:"p50_us"`
	P90us  float64 `json:"p90_us"`
	P99us  float64 `json:"p99_us"`
	MeanUs float64 `json:"mean_us"`
	MaxUs  float64 `json:"max_us"`
}

// percentile uses the nearest-rank method on a sorted slice.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted))+0.999999) - 1
	if rank < 0 {
		rank = 0
	}
	if rank >= len(sorted) {
		rank = len(sorted) - 1
	}
	return sorted[rank]
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

func (s *samples) summarize() map[string]summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]summary{}
	for op, ds := range s.ops {
		sorted := append([]time.Duration(nil), ds...)
		sort.Slice(sorted, func(a, b int) bool { return sorted[a] < sorted[b] })
		var sum time.Duration
		for _, d := range sorted {
			sum += d
		}
		out[op] = summary{
			N:      len(sorted),
			P50us:  us(percentile(sorted, 50)),
			P90us:  us(percentile(sorted, 90)),
			P99us:  us(percentile(sorted, 99)),
			MeanUs: us(sum / time.Duration(len(sorted))),
			MaxUs:  us(sorted[len(sorted)-1]),
		}
	}
	return out
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if path == "" || path == "-" {
		_, err = os.Stdout.Write(append(b, '\n'))
		return err
	}
	return writeFile(path, append(b, '\n'))
}
