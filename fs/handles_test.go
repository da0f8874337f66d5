package fs

import (
	"bytes"
	"context"
	"io"
	"log"
	"testing"

	"github.com/mpcfs/mpcfs/crypto"
	"github.com/mpcfs/mpcfs/internal/metrics"
	"github.com/mpcfs/mpcfs/tuning"
)

// TestWarmNextOnce: a segment read in sequence warms the next ones once,
// when the reads pass tuning.Default().WarmAfter; reads at random places near the end (a
// probe for the duration, say) or of just its start (a probe of the
// format) warm nothing.
func TestWarmNextOnce(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), (12<<20)/16)
	f, err := crypto.NewFile([]crypto.Part{{PlainSize: int64(len(data)), Src: func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data[off : off+n])), nil
	}}})
	if err != nil {
		t.Fatal(err)
	}
	opts := &Options{Log: log.New(io.Discard, "", 0), Tuning: tuning.Default()}
	ctx := context.Background()
	buf := make([]byte, 128<<10)

	seek := newReadHandle(f, opts, "seek", metrics.KindSegment)
	calls := 0
	seek.warmNext = func() { calls++ }
	for _, off := range []int64{f.Size() - 1<<20, f.Size() - 3<<20} {
		if _, errno := seek.Read(ctx, buf, off); errno != 0 {
			t.Fatal(errno)
		}
	}
	seek.Release(ctx)
	if calls != 0 {
		t.Fatalf("random reads near the end warmed the next segment %d times", calls)
	}

	probe := newReadHandle(f, opts, "probe", metrics.KindSegment)
	probe.warmNext = func() { calls++ }
	for off := int64(0); off+int64(len(buf)) < tuning.Default().WarmAfter; off += int64(len(buf)) {
		if _, errno := probe.Read(ctx, buf, off); errno != 0 {
			t.Fatal(errno)
		}
	}
	probe.Release(ctx)
	if calls != 0 {
		t.Fatalf("reading the first %d bytes warmed the next segment %d times", tuning.Default().WarmAfter, calls)
	}

	seq := newReadHandle(f, opts, "seq", metrics.KindSegment)
	var warmedAt []int64
	var off int64
	seq.warmNext = func() { warmedAt = append(warmedAt, off) }
	for ; off < f.Size(); off += int64(len(buf)) {
		if _, errno := seq.Read(ctx, buf, off); errno != 0 {
			t.Fatal(errno)
		}
	}
	seq.Release(ctx)
	// Once, by the first read ending at or past tuning.Default().WarmAfter.
	if len(warmedAt) != 1 || warmedAt[0]+int64(len(buf)) < tuning.Default().WarmAfter || warmedAt[0] >= tuning.Default().WarmAfter {
		t.Fatalf("warmed at offsets %v of %d, want once, by the first read ending past %d", warmedAt, f.Size(), tuning.Default().WarmAfter)
	}
}
