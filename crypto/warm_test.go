package crypto

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/internal/testutil"
	"github.com/mpcfs/mpcfs/tuning"
)

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, "waiting for "+what, cond)
}

// TestWarmIsAdopted: a warmed File is read from its source before anyone
// opens it; the next Reader continues that stream, so every byte is read
// once, in one stream, and the ciphertext is openssl's.
func TestWarmIsAdopted(t *testing.T) {
	for _, alg := range allAlgs {
		f, src := onePart(t, rand.New(rand.NewSource(21)), alg, 3<<20+5, testIV)
		want := openssl(t, alg, testKey, testIV, src.data)
		f.Warm()
		f.Warm() // a second Warm of a warm File does nothing
		waitFor(t, "the warm stream to read its source", func() bool { return src.read.Load() > 0 })
		if n := warmHeld.Load(); n != 1 {
			t.Fatalf("%s: %d warm streams held, want 1", alg, n)
		}
		got := readSeq(t, f, 128<<10)
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: a warm stream's ciphertext differs from openssl's", alg)
		}
		if n := warmHeld.Load(); n != 0 {
			t.Fatalf("%s: %d warm streams held after adoption, want 0", alg, n)
		}
		checkStreamWindows(t, src, 0, maxWindow)
	}
}

// TestWarmExpires: a warm stream nobody adopts is stopped after WarmTTL,
// its goroutine gone, and the next Reader starts afresh.
func TestWarmExpires(t *testing.T) {
	withTuning(t, func(tu *tuning.Tuning) { tu.WarmTTL = 50 * time.Millisecond })
	f, src := onePart(t, rand.New(rand.NewSource(22)), AES128CBC, 4<<20, testIV)
	base := runtime.NumGoroutine()
	f.Warm()
	waitFor(t, "the warm stream to expire", func() bool { return warmHeld.Load() == 0 && runtime.NumGoroutine() <= base })
	if n := len(tun().aheadTokens); n != 0 {
		t.Fatalf("an expired warm stream left %d chunks of the ahead budget taken", n)
	}
	want := openssl(t, AES128CBC, testKey, testIV, src.data)
	if got := readSeq(t, f, 1<<20); !bytes.Equal(got, want) {
		t.Fatal("ciphertext after an expired warm stream differs from openssl's")
	}
	if w := src.windows(); len(w) != 2 || w[1][0] != 0 {
		t.Fatalf("windows %v, want the expired stream's and a new one from 0", w)
	}
}

// TestWarmBounded: at most maxWarm streams are held, whatever is warmed.
func TestWarmBounded(t *testing.T) {
	r := rand.New(rand.NewSource(23))
	var files []*File
	for range maxWarm + 3 {
		f, _ := onePart(t, r, AES128CTR, 1<<20, testIV)
		f.Warm()
		files = append(files, f)
	}
	if n := warmHeld.Load(); n != maxWarm {
		t.Fatalf("%d warm streams held, want the bound %d", n, maxWarm)
	}
	for _, f := range files {
		f.StopWarm()
	}
	if n := warmHeld.Load(); n != 0 {
		t.Fatalf("%d warm streams held after taking them all", n)
	}
}

// TestWarmMakesRoom: with every place held, a new warm stream replaces the
// oldest one once that has waited WarmEvictAfter, and not before (a fast
// reader's warm streams are not undone by another's); the stopped one's
// budget is given back and its File reads right afterwards.
func TestWarmMakesRoom(t *testing.T) {
	const age = time.Second
	withTuning(t, func(tu *tuning.Tuning) { tu.WarmEvictAfter = age })
	r := rand.New(rand.NewSource(26))
	var files []*File
	var srcs []*memSource
	for range maxWarm + 2 {
		f, src := onePart(t, r, AES128CBC, 2<<20, testIV)
		files, srcs = append(files, f), append(srcs, src)
	}
	t.Cleanup(func() {
		for _, f := range files {
			f.StopWarm()
		}
	})
	early, late := files[maxWarm], files[maxWarm+1]
	for _, f := range files[:maxWarm] {
		f.Warm()
	}
	early.Warm()
	if early.Warming() || !files[0].Warming() {
		t.Fatal("a new warm stream replaced one that had waited less than WarmEvictAfter")
	}
	time.Sleep(age)
	evictions := WarmEvictions()
	late.Warm()
	if !late.Warming() {
		t.Fatal("a new warm stream found every place held by streams waiting longer than WarmEvictAfter, and was not started")
	}
	if files[0].Warming() || !files[1].Warming() {
		t.Fatal("the new warm stream did not replace the oldest one (and only that one)")
	}
	if n := warmHeld.Load(); n != maxWarm {
		t.Fatalf("%d warm streams held, want the bound %d", n, maxWarm)
	}
	if WarmEvictions() != evictions+1 {
		t.Fatalf("evictions went from %d to %d, want one more", evictions, WarmEvictions())
	}
	want := openssl(t, AES128CBC, testKey, testIV, srcs[0].data)
	if got := readSeq(t, files[0], 1<<20); !bytes.Equal(got, want) {
		t.Fatal("ciphertext of a File whose warm stream was replaced differs from openssl's")
	}
}

// TestWarmFailureRetried: a warm stream whose source failed (the store was
// away when it was warmed) is not what the reader gets: its first read
// tries afresh and returns the right bytes.
func TestWarmFailureRetried(t *testing.T) {
	src := &memSource{data: randBytes(rand.New(rand.NewSource(24)), 1<<20)}
	var opens atomic.Int32
	flaky := func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
		if opens.Add(1) == 1 {
			return nil, errors.New("store unreachable")
		}
		return src.open(ctx, off, n)
	}
	f := newTestFile(t, Part{Src: flaky, PlainSize: int64(len(src.data)), Alg: AES128CBC, Key: testKey, IV: testIV})
	f.Warm()
	waitFor(t, "the warm stream to fail", func() bool { return opens.Load() == 1 })
	want := openssl(t, AES128CBC, testKey, testIV, src.data)
	if got := readSeq(t, f, 128<<10); !bytes.Equal(got, want) {
		t.Fatal("wrong ciphertext after a failed warm stream")
	}
}

// TestWarmRunsAhead: a warm stream encrypts far ahead of its reader, into
// the shared budget, and gives the budget back as its chunks are read; an
// ordinary stream stays one chunk ahead.
func TestWarmRunsAhead(t *testing.T) {
	r := rand.New(rand.NewSource(25))
	f, src := onePart(t, r, AES128CBC, 12<<20, testIV)
	f.Warm()
	waitFor(t, "the warm stream to run ahead", func() bool { return src.read.Load() >= 6<<20 })
	if n := len(tun().aheadTokens); n == 0 || n > aheadChunks {
		t.Fatalf("warm stream 6 MiB ahead holds %d chunks of the budget", n)
	}
	if got, want := readSeq(t, f, 128<<10), openssl(t, AES128CBC, testKey, testIV, src.data); !bytes.Equal(got, want) {
		t.Fatal("ciphertext read after running ahead differs from openssl's")
	}
	if n := len(tun().aheadTokens); n != 0 {
		t.Fatalf("%d chunks of the ahead budget still taken after the read", n)
	}

	g, gsrc := onePart(t, r, AES128CBC, 12<<20, testIV)
	rd := g.NewReader()
	defer rd.Close()
	checkRead(t, rd, openssl(t, AES128CBC, testKey, testIV, gsrc.data), 0, 4096)
	time.Sleep(100 * time.Millisecond) // what an ordinary stream makes while nobody reads
	if n := gsrc.read.Load(); n > (chunkQueue+2)*chunkSize {
		t.Fatalf("an ordinary stream read %d bytes ahead of a 4 KiB read; its bound is %d", n, (chunkQueue+2)*chunkSize)
	}
}

// TestWarmSkipsOpenFile: a File someone is reading is not warmed (its
// reader is ahead of any warm stream); once closed it can be.
func TestWarmSkipsOpenFile(t *testing.T) {
	f, _ := onePart(t, rand.New(rand.NewSource(26)), AES128CTR, 1<<20, testIV)
	rd := f.NewReader()
	f.Warm()
	if n := warmHeld.Load(); n != 0 {
		t.Fatalf("warming a File being read holds %d streams", n)
	}
	rd.Close()
	rd.Close() // counted once
	f.Warm()
	if n := warmHeld.Load(); n != 1 {
		t.Fatalf("warming a closed File holds %d streams, want 1", n)
	}
	f.takeWarm().Close()
}

// TestWarmForsakenGiveBudget: when warm streams hold all of the ahead
// budget, a reader that holds no warm stream yet stops those whose asker
// nobody reads any more (once they have waited WarmEvictAfter), so its
// own can run ahead. Controls: nothing is stopped while their asker is
// still being read; and a reader that already holds a warm stream stops
// nothing (two players reading in real time, each idle between segments,
// would otherwise stop each other's streams at every segment).
func TestWarmForsakenGiveBudget(t *testing.T) {
	const age = 50 * time.Millisecond
	withTuning(t, func(tu *tuning.Tuning) { tu.WarmEvictAfter = age })
	r := rand.New(rand.NewSource(27))
	small := func() *File { f, _ := onePart(t, r, AES128CBC, 1<<20, testIV); return f }
	a, b, e := small(), small(), small()
	var stale []*File
	for range 3 {
		f, _ := onePart(t, r, AES128CBC, 12<<20, testIV)
		stale = append(stale, f)
	}
	c, d := small(), small()
	g, gsrc := onePart(t, r, AES128CBC, 12<<20, testIV)
	t.Cleanup(func() {
		for _, f := range append(stale, c, d, g) {
			f.StopWarm()
		}
	})
	rdA, rdB, rdE := a.NewReader(), b.NewReader(), e.NewReader()
	defer rdB.Close()
	defer rdE.Close()
	for _, f := range stale {
		f.WarmFor(a)
	}
	tokens := tun().aheadTokens
	waitFor(t, "the warm streams to take all of the budget", func() bool { return len(tokens) == cap(tokens) })
	time.Sleep(age)
	stillWarm := func(what string) {
		t.Helper()
		for i, f := range stale {
			if !f.Warming() {
				t.Fatalf("%s: stale[%d] was stopped", what, i)
			}
		}
	}

	evictions := WarmEvictions()
	c.WarmFor(b)
	stillWarm("control: its asker is still being read")
	rdA.Close()
	d.WarmFor(b)
	stillWarm("control: asked for by a reader that already holds a warm stream")
	g.WarmFor(e)
	for i, f := range stale {
		if f.Warming() {
			t.Fatalf("stale[%d] still holds the budget: its asker is closed, it waited %v, and a new reader asked", i, age)
		}
	}
	if !c.Warming() || !d.Warming() || !g.Warming() {
		t.Fatal("a stream whose asker is being read was stopped")
	}
	if n := WarmEvictions() - evictions; n != 3 {
		t.Fatalf("%d warm streams stopped, want the 3 whose asker is closed", n)
	}
	waitFor(t, "the new reader's warm stream to run ahead into the freed budget", func() bool { return gsrc.read.Load() >= 4<<20 })
	if got, want := readSeq(t, g, 1<<20), openssl(t, AES128CBC, testKey, testIV, gsrc.data); !bytes.Equal(got, want) {
		t.Fatal("ciphertext of the warm stream that ran into the freed budget differs from openssl's")
	}
}
