package heaplimit

import (
	"context"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"
)

// TestNext: the limit stays while the live heap is within the share of
// it, and is raised to live/share (rounded up to 8 MiB) past it.
func TestNext(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		limit, live int64
		want        int64
	}{
		{48 * mib, 20 * mib, 48 * mib},
		{48 * mib, 28 * mib, 48 * mib}, // 58%: within 0.6
		{48 * mib, 40 * mib, 72 * mib}, // 40/0.6 = 66.7 -> 72
		{0, 400 * mib, 0},              // no limit: none set
	} {
		if got := Next(c.limit, c.live, 0.6); got != c.want {
			t.Errorf("Next(%d MiB, %d MiB live) = %d MiB, want %d MiB", c.limit/mib, c.live/mib, got/mib, c.want/mib)
		}
	}
}

// TestFollowRaisesTheLimit: with 64 MiB held live under a soft limit of
// 32 MiB, Follow raises the limit past the live heap; the control is a
// live heap within the share, where the limit is left alone.
func TestFollowRaisesTheLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(prev)
	run := func(hold int) (int64, int64) {
		const base = 32 << 20
		debug.SetMemoryLimit(base)
		held := make([][]byte, hold)
		for i := range held {
			held[i] = make([]byte, 1<<20)
		}
		runtime.GC()
		ctx, cancel := context.WithCancel(context.Background())
		var mu sync.Mutex
		var got int64 = base
		done := make(chan struct{})
		go func() {
			defer close(done)
			Follow(ctx, base, 0.6, 10*time.Millisecond, func(limit, live int64) {
				mu.Lock()
				got = limit
				mu.Unlock()
			})
		}()
		time.Sleep(100 * time.Millisecond)
		cancel()
		<-done
		live := Live()
		runtime.KeepAlive(held)
		mu.Lock()
		defer mu.Unlock()
		return got, live
	}
	if limit, live := run(64); float64(live) > 0.6*float64(limit) {
		t.Errorf("%d MiB live under a soft limit of %d MiB after Follow: not raised", live>>20, limit>>20)
	}
	if limit, live := run(2); limit != 32<<20 {
		t.Errorf("%d MiB live: the limit moved to %d MiB, want it left at 32", live>>20, limit>>20)
	}
}
