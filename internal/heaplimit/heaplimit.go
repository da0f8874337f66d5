// Package heaplimit keeps the Go heap's soft limit (debug.SetMemoryLimit)
// above what the daemon really holds live.
//
// The daemon sets a tight soft limit (tuning.Tuning.HeapLimit) so that
// many readers do not let its RSS grow far past what is live. But what
// is live grows with the catalogue: about 400 bytes a task, 40 MB at
// 100,000 tasks, near the 48 MiB limit. A soft limit at or below the live
// heap makes the garbage collector run back to back (Go then caps it at
// half the CPU): on the bench machine the daemon used 117% of a core
// while idle but for single requests, and request -> SUCCEEDED took
// 65 ms instead of 20. Follow raises the limit when the live heap passes
// a share of it, so the GC keeps a margin to work in, whatever the
// catalogue's size; it never lowers it below the limit it was given.
package heaplimit

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// liveMetric is the heap the last GC found live.
const liveMetric = "/gc/heap/live:bytes"

// Live is the heap the last GC found live, in bytes.
func Live() int64 {
	s := []metrics.Sample{{Name: liveMetric}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64())
}

// Next is the soft limit to use when live bytes are live and the limit
// is limit: limit while live stays within share of it, else live/share
// rounded up to 8 MiB.
func Next(limit, live int64, share float64) int64 {
	if limit <= 0 || share <= 0 || float64(live) <= share*float64(limit) {
		return limit
	}
	const round = 8 << 20
	want := int64(float64(live) / share)
	return (want + round - 1) / round * round
}

// Follow checks the live heap every period until ctx ends and raises
// the soft limit (from base, the limit set at start) as Next says,
// calling raised with each new limit and what was live.
func Follow(ctx context.Context, base int64, share float64, period time.Duration, raised func(limit, live int64)) {
	limit := base
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		live := Live()
		if next := Next(limit, live, share); next > limit {
			limit = next
			debug.SetMemoryLimit(limit)
			if raised != nil {
				raised(limit, live)
			}
		}
	}
}
