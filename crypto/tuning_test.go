package crypto

import (
	"strings"
	"testing"

	"github.com/mpcfs/mpcfs/tuning"
)

// The default tuning as untyped constants, for tables and bounds in tests;
// TestTestConstantsAreTheDefaults keeps them honest.
const (
	chunkSize       = 512 << 10
	checkpointEvery = 64 << 10
	maxWindow       = 16 << 20
	idleSkip        = 256 << 10
	maxWarm         = 8
	aheadChunks     = 48 // WarmBudget / ChunkSize
)

func TestTestConstantsAreTheDefaults(t *testing.T) {
	d := tuning.Default()
	got := []int64{chunkSize, checkpointEvery, maxWindow, idleSkip, maxWarm, aheadChunks}
	want := []int64{int64(d.ChunkSize), d.CheckpointEvery, d.MaxWindow, d.IdleSkip, int64(d.MaxWarmStreams), d.WarmBudget / int64(d.ChunkSize)}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("test constant %d is %d, the default tuning says %d", i, got[i], want[i])
		}
	}
}

// withTuning changes the tuning for one test (tests using it must not run
// in parallel) and restores it after.
func withTuning(t testing.TB, change func(*tuning.Tuning)) {
	old := Tuning()
	next := old
	change(&next)
	if err := SetTuning(next); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := SetTuning(old); err != nil {
			t.Error(err)
		}
	})
}

// TestSetTuningValidates: a tuning that cannot work is refused, naming the
// field, and the one in force stays.
func TestSetTuningValidates(t *testing.T) {
	bad := tuning.Default()
	bad.ChunkSize = 1000 // not a multiple of 16
	err := SetTuning(bad)
	if err == nil || !strings.Contains(err.Error(), "ChunkSize") {
		t.Fatalf("SetTuning(ChunkSize 1000) = %v, want an error naming ChunkSize", err)
	}
	if Tuning().ChunkSize != chunkSize {
		t.Fatalf("a refused tuning changed the one in force")
	}
}

// TestTuningChunkSize: a different ChunkSize changes the chunks streams
// make (and so what a Reader holds), and the output stays exact.
func TestTuningChunkSize(t *testing.T) {
	withTuning(t, func(tu *tuning.Tuning) { tu.ChunkSize = 64 << 10 })
	if b := getBuf(); len(b.b) != 64<<10 {
		t.Fatalf("chunk buffer of %d bytes after ChunkSize 64 KiB", len(b.b))
	} else {
		b.unref()
	}
}
