// Package heaplimit keeps the Go heap's soft limit (debug.SetMemoryLimit)
// at the daemon's working budget plus room for what its catalogue holds.
//
// The daemon sets a tight soft limit (tuning.Tuning.HeapLimit) so that
// many readers do not let its RSS grow far past what is live: under
// load the GC works harder instead. But the catalogue's summaries are
// live for good and grow with the store: about 400 bytes a task, 40 MB
// at 100,000 tasks, near the whole 48 MiB limit. A soft limit at the live
// heap makes the garbage collector run back to back (Go then caps it at
// half the CPU): on the bench machine the daemon used 117% of a core
// serving single requests, and request -> SUCCEEDED took 65 ms instead
// of 18. Follow gives the limit room per task on top of the budget, so
// the readers' bound stays what it was for small catalogues and large
// ones do not starve the GC. (Following the live heap instead raised the
// limit under reader load too, and the 16-reader RSS went past 100 MB.)
package heaplimit

import (
	"context"
	"runtime/debug"
	"time"
)

// step rounds the extra room down, so the limit moves in steps, not per
// task, and a small catalogue leaves it as it was.
const step = 8 << 20

// Limit is the soft limit for a base budget and extra bytes of room:
// base plus extra rounded down to 8 MiB (base alone when there is no
// limit, base <= 0).
func Limit(base, extra int64) int64 {
	if base <= 0 || extra <= 0 {
		return base
	}
	return base + extra/step*step
}

// Follow sets the soft limit to Limit(base, extra()) every period until
// ctx ends, calling changed with each new limit.
func Follow(ctx context.Context, base int64, extra func() int64, period time.Duration, changed func(limit int64)) {
	limit := base
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		if next := Limit(base, extra()); next != limit {
			limit = next
			debug.SetMemoryLimit(limit)
			if changed != nil {
				changed(limit)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
