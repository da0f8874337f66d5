package crypto

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/tuning"
)

// tinyBuffers sets chunks of 64 KiB and a bound of chunks of them (the
// least Validate allows with a warm budget of warm chunks), and says
// whether the pool takes buffers back under pressure.
func tinyBuffers(t *testing.T, chunks, warm int, reclaim bool) *bufferPool {
	t.Helper()
	withTuning(t, func(tu *tuning.Tuning) {
		tu.ChunkSize = 64 << 10
		tu.WarmBudget = int64(warm) * 64 << 10
		tu.BufferMemory = int64(chunks) * 64 << 10
		tu.MaxWarmStreams = 8
		tu.WarmEvictAfter = 20 * time.Millisecond
	})
	noReclaim.Store(!reclaim)
	t.Cleanup(func() { noReclaim.Store(false) })
	return tun().bufs
}

// readAll reads f through one Reader in the order of reqs (offset,
// length) and returns the bytes in File order; it gives up at ctx's end.
func readAll(ctx context.Context, f *File, reqs [][2]int64) ([]byte, error) {
	rd := f.NewReader()
	defer rd.Close()
	out := make([]byte, f.Size())
	for _, q := range reqs {
		n := int(min(q[1], f.Size()-q[0]))
		if n <= 0 {
			continue
		}
		k, err := rd.ReadAt(ctx, out[q[0]:q[0]+int64(n)], q[0])
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("ReadAt(%d, %d): %w", q[0], n, err)
		}
		if k != n {
			return nil, fmt.Errorf("ReadAt(%d, %d) = %d bytes", q[0], n, k)
		}
	}
	return out, nil
}

// seqReqs are n-byte reads from 0 to size.
func seqReqs(size int64, n int64) [][2]int64 {
	var reqs [][2]int64
	for off := int64(0); off < size; off += n {
		reqs = append(reqs, [2]int64{off, n})
	}
	return reqs
}

// crowd is the workload of the bound's tests: warm streams on eight
// Files, then six readers at once (kernel-like requests, some late),
// each then adopting a warm File. Every output must be openssl's, within
// the deadline.
func crowd(t *testing.T, deadline time.Duration) error {
	rng := rand.New(rand.NewSource(61))
	type job struct {
		f    *File
		want []byte
	}
	mk := func(n int) []job {
		var js []job
		for range n {
			f, src := onePart(t, rng, AES128CBC, 1<<20+rng.Intn(1<<20), testIV)
			js = append(js, job{f, openssl(t, AES128CBC, testKey, testIV, src.data)})
		}
		return js
	}
	warm, read := mk(8), mk(6)
	for _, j := range warm {
		j.f.Warm()
	}
	t.Cleanup(func() {
		for _, j := range warm {
			j.f.StopWarm()
		}
	})
	time.Sleep(50 * time.Millisecond) // the warm streams fill what they may
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	errs := make(chan error, len(read))
	for i, j := range read {
		go func() {
			check := func(j job, reqs [][2]int64) error {
				got, err := readAll(ctx, j.f, reqs)
				if err != nil {
					return err
				}
				if !bytes.Equal(got, j.want) {
					return errors.New("output differs from openssl's")
				}
				return nil
			}
			err := check(j, catPattern(j.f.Size(), 2))
			if err == nil {
				err = check(warm[i], seqReqs(warm[i].f.Size(), 128<<10))
			}
			errs <- err
		}()
	}
	var first error
	for range read {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// TestBufferBound: with a bound of ten chunks, warm streams filling what
// they may and six readers at once, every reader finishes with openssl's
// output, no more buffers ever exist than the bound, and all of them are
// back when the readers and warm streams are gone. Negative control: the
// same workload with a large bound uses more than ten, so the bound is
// what held it.
func TestBufferBound(t *testing.T) {
	p := tinyBuffers(t, 10, 2, true)
	if err := crowd(t, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	st := Buffers()
	if st.Limit != 10 || st.Peak > st.Limit {
		t.Fatalf("peak %d buffers in use, bound %d", st.Peak, st.Limit)
	}
	if st.Waits == 0 {
		t.Fatalf("no get waited: the bound was never reached, the test shows nothing")
	}
	stopAllWarm()
	waitFor(t, "every buffer back", func() bool { return Buffers().InUse == 0 })
	p.mu.Lock()
	mapped := p.mapped
	p.mu.Unlock()
	if mapped > p.limit {
		t.Fatalf("%d buffers mapped, bound %d", mapped, p.limit)
	}

	withTuning(t, func(tu *tuning.Tuning) { tu.BufferMemory, tu.MemoryLimit = 1<<30, 2<<30 })
	if err := crowd(t, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if peak := Buffers().Peak; peak <= 10 {
		t.Fatalf("unbounded, the workload peaked at %d buffers: the bound of 10 was not tested", peak)
	}
	stopAllWarm()
}

// stopAllWarm stops every warm stream.
func stopAllWarm() {
	for evictOldestWarm() {
	}
}

// TestBufferReclaimFromIdleReaders: Readers left open after a little
// reading hold chunks (the newest, the next ones made ahead); with a
// bound of ten, later readers get theirs back from them. Negative
// control: without taking buffers back the later readers stall.
func TestBufferReclaimFromIdleReaders(t *testing.T) {
	for _, reclaim := range []bool{true, false} {
		t.Run(fmt.Sprintf("reclaim=%v", reclaim), func(t *testing.T) {
			tinyBuffers(t, 10, 2, reclaim)
			rng := rand.New(rand.NewSource(62))
			deadline := 20 * time.Second
			if !reclaim {
				deadline = 2 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			var idle []*Reader
			defer func() {
				for _, r := range idle {
					r.Close()
				}
			}()
			var err error
			for i := 0; i < 8 && err == nil; i++ {
				f, src := onePart(t, rng, AES128CBC, 2<<20, testIV)
				want := openssl(t, AES128CBC, testKey, testIV, src.data)
				rd := f.NewReader()
				idle = append(idle, rd)
				got := make([]byte, 100<<10)
				if _, err = rd.ReadAt(ctx, got, 0); err == nil && !bytes.Equal(got, want[:len(got)]) {
					t.Fatalf("reader %d: output differs from openssl's", i)
				}
				time.Sleep(30 * time.Millisecond) // it is idle now (WarmEvictAfter)
			}
			switch {
			case reclaim && err != nil:
				t.Fatalf("a reader stalled behind idle ones: %v", err)
			case !reclaim && err == nil:
				t.Fatalf("without taking buffers back, eight idle readers fit a bound of ten chunks: the test shows nothing")
			}
		})
	}
}

// TestBufferWarmYields: when the bound is full of warm streams' chunks
// (here they may take all of it), a reader still gets its chunks: the
// warm streams are stopped for it. Negative control: with neither the
// reserve warm streams leave nor taking buffers back, it stalls.
func TestBufferWarmYields(t *testing.T) {
	for _, yield := range []bool{true, false} {
		t.Run(fmt.Sprintf("yield=%v", yield), func(t *testing.T) {
			p := tinyBuffers(t, 10, 2, yield)
			p.mu.Lock()
			p.warm = 1 // warm chunks may take every buffer
			p.mu.Unlock()
			rng := rand.New(rand.NewSource(63))
			var warm []*File
			for range 8 {
				f, _ := onePart(t, rng, AES128CBC, 1<<20, testIV)
				f.Warm()
				warm = append(warm, f)
			}
			defer func() {
				for _, f := range warm {
					f.StopWarm()
				}
			}()
			waitFor(t, "warm streams to fill the bound", func() bool { return Buffers().InUse == 10 })
			f, src := onePart(t, rng, AES128CBC, 1<<20, testIV)
			want := openssl(t, AES128CBC, testKey, testIV, src.data)
			deadline := 20 * time.Second
			if !yield {
				deadline = time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			got, err := readAll(ctx, f, seqReqs(f.Size(), 128<<10))
			switch {
			case yield && err != nil:
				t.Fatalf("a reader stalled behind warm chunks: %v", err)
			case yield && !bytes.Equal(got, want):
				t.Fatalf("output differs from openssl's")
			case !yield && err == nil:
				t.Fatalf("the reader got buffers with the bound full of warm chunks and none taken back: the test shows nothing")
			}
		})
	}
}

// TestBufferNotReusedUnderReply: a Data handed out (a FUSE reply being
// written) keeps its buffers while the Reader moves on, lets them go and
// other readers recycle buffers under a tight bound: its bytes stay
// openssl's, with every buffer poisoned as it is given back. Released, its
// buffers come back. Negative control: a Data whose reference is dropped
// early shows the poison.
func TestBufferNotReusedUnderReply(t *testing.T) {
	tinyBuffers(t, 10, 2, true)
	poisonFreed.Store(true)
	defer poisonFreed.Store(false)
	rng := rand.New(rand.NewSource(64))
	f, src := onePart(t, rng, AES128CBC, 1<<20, testIV)
	want := openssl(t, AES128CBC, testKey, testIV, src.data)
	rd := f.NewReader()
	ctx := context.Background()
	var held []Data
	var offs []int64
	for i, off := 0, int64(0); off < f.Size(); i, off = i+1, off+96<<10 {
		d, err := rd.ReadData(ctx, off, 96<<10)
		if err != nil {
			t.Fatal(err)
		}
		if i%4 != 1 { // replies written at once; every fourth one is held
			d.Release()
			continue
		}
		held = append(held, d)
		offs = append(offs, off)
	}
	rd.Close()
	// Others churn through the remaining buffers meanwhile.
	var wg sync.WaitGroup
	for range 2 {
		g, gsrc := onePart(t, rng, AES128CBC, 1<<20, testIV)
		gwant := openssl(t, AES128CBC, testKey, testIV, gsrc.data)
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := readAll(context.Background(), g, seqReqs(g.Size(), 128<<10))
			if err != nil || !bytes.Equal(got, gwant) {
				t.Errorf("a reader beside the held replies: %v (or wrong bytes)", err)
			}
		}()
	}
	wg.Wait()
	for i, d := range held {
		var got []byte
		for _, s := range d.Slices {
			got = append(got, s...)
		}
		if !bytes.Equal(got, want[offs[i]:offs[i]+int64(len(got))]) {
			t.Fatalf("reply at %d changed while it was held", offs[i])
		}
	}
	if Buffers().InUse == 0 {
		t.Fatalf("held replies hold no buffers")
	}
	// Negative control: drop the last reply's reference to its first
	// buffer early (as a Release too soon would).
	last := held[len(held)-1]
	held = held[:len(held)-1]
	last.bufs[0].unref()
	if bytes.Equal(last.Slices[0], want[offs[len(offs)-1]:offs[len(offs)-1]+int64(len(last.Slices[0]))]) {
		t.Fatalf("a buffer given back while its reply was held still reads right: the poison check shows nothing")
	}
	for _, b := range last.bufs[1:] {
		b.unref()
	}
	for i := range held {
		held[i].Release()
	}
	waitFor(t, "every buffer back", func() bool { return Buffers().InUse == 0 })
}

// TestBuffersUnmappedWhenIdle: the buffers a read mapped are unmapped
// once none has been in use for idleUnmap, so an idle mount gives their
// memory back. Negative control: while the Reader is open they stay.
func TestBuffersUnmappedWhenIdle(t *testing.T) {
	tinyBuffers(t, 10, 2, true)
	before := Buffers().Mapped
	f, src := onePart(t, rand.New(rand.NewSource(65)), AES128CBC, 1<<20, testIV)
	want := openssl(t, AES128CBC, testKey, testIV, src.data)
	rd := f.NewReader()
	got := make([]byte, f.Size())
	if _, err := rd.ReadAt(context.Background(), got, 0); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("output differs from openssl's")
	}
	time.Sleep(idleUnmap + 200*time.Millisecond)
	if m := Buffers().Mapped; m <= before || m > before+10*64<<10 {
		t.Fatalf("with the Reader open, %d bytes mapped (before %d, bound 10 chunks of 64 KiB)", m, before)
	}
	rd.Close()
	waitFor(t, "the buffers unmapped", func() bool { return Buffers().Mapped <= before })
}
