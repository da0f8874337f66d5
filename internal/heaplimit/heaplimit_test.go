package heaplimit

import (
	"context"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"time"
)

// TestLimit: the limit is the budget plus the room asked, rounded down to
// 8 MiB; no room, or no budget (no limit), leaves it as it is.
func TestLimit(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct{ base, extra, want int64 }{
		{48 * mib, 0, 48 * mib},
		{48 * mib, 1200, 48 * mib},        // 2 tasks at 600 B
		{48 * mib, 60e6, 48*mib + 56*mib}, // 100,000 tasks
		{0, 60e6, 0},
	} {
		if got := Limit(c.base, c.extra); got != c.want {
			t.Errorf("Limit(%d, %d) = %d, want %d", c.base, c.extra, got, c.want)
		}
	}
}

// TestFollowSetsTheLimit: Follow sets the runtime's soft limit as the
// room asked for grows and shrinks; the control is no room, where the
// limit stays the budget.
func TestFollowSetsTheLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(prev)
	const base = 32 << 20
	debug.SetMemoryLimit(base)
	var room atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Follow(ctx, base, room.Load, 5*time.Millisecond, nil)
	}()
	defer func() { cancel(); <-done }()
	wait := func(want int64) {
		t.Helper()
		for end := time.Now().Add(2 * time.Second); debug.SetMemoryLimit(-1) != want; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("soft limit %d MiB, want %d MiB", debug.SetMemoryLimit(-1)>>20, want>>20)
			}
		}
	}
	time.Sleep(20 * time.Millisecond)
	if got := debug.SetMemoryLimit(-1); got != base {
		t.Errorf("no room asked: soft limit %d MiB, want the budget, %d MiB", got>>20, base>>20)
	}
	room.Store(20 << 20)
	wait(base + 16<<20)
	room.Store(0)
	wait(base)
}
