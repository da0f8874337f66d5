package crypto

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Chunk buffers live outside the Go heap, in anonymous mappings, and are
// bounded by Tuning.BufferMemory instead of by the heap limit. On the heap
// they kept the live heap of many readers near the heap limit, and the GC
// then ran several times a second, scanning nothing of use (the buffers
// hold no pointers). Off the heap, the bound must be kept here: every
// buffer that exists (in use or idle on the free list) counts, and when
// the bound is reached the one that asks for another waits.
//
// Who waits, and why that always ends. A buffer is wanted for one of
// three things, most urgent first (bufClass):
//   - needed: a reader waits for it (a read aside, a synchronous chunk
//     after a seek, or a producer whose Reader waits in receive);
//   - ahead: a stream's next chunk, made before its reader asks;
//   - warm: a warm stream's chunk, made for a reader that has not come
//     yet. Warm chunks never take the last 1/bufReserve of the buffers.
//
// A buffer freed goes straight to the most urgent waiter. While a needed
// buffer waits with none free (pressure), buffers are taken back from
// whoever holds them without needing them now (runReclaim): warm streams
// are stopped, oldest first; Readers not read for Tuning.WarmEvictAfter
// let their held chunks and read-ahead go. A Reader that waits lets go,
// if the pressure lasts reclaimGrace, of its held chunks (all behind the
// one it waits for: a late request is then read aside) and of the reply
// it has gathered so far (copied to the heap: Reader.unpin), so requests
// spanning several chunks cannot each hold some and wait for more. What
// is left holds buffers for a bounded time and gives them back by itself:
// replies being written (the kernel copies them; an HTTP client is
// bounded by the origin's write deadline) and chunks being made.
type bufClass int

const (
	classWarm bufClass = iota
	classAhead
	classNeeded
)

// bufReserve is the share of the bound (1/bufReserve of it) warm streams
// leave to streams being read.
const bufReserve = 4

// buffer is a chunk buffer. It is counted: the Reader holds one reference
// while it holds the chunk, and each Data handed out (a FUSE reply being
// written straight from it) holds one more, so a chunk the Reader lets go
// is not reused while the kernel still copies it.
type buffer struct {
	b    []byte
	refs atomic.Int32
	pool *bufferPool
}

func (b *buffer) ref() { b.refs.Add(1) }

// unref drops a reference; the last one gives the buffer back to its pool.
func (b *buffer) unref() {
	switch n := b.refs.Add(-1); {
	case n == 0:
		b.pool.put(b)
	case n < 0:
		panic("crypto: chunk buffer released twice")
	}
}

// bufWaiter is a get waiting for a buffer. class is asked at each hand
// out: a producer's chunk becomes needed when its Reader starts waiting.
type bufWaiter struct {
	class func() bufClass
	got   chan *buffer // one buffer, or nil: a place to map a new one
}

// bufferPool hands out buffers of one size, at most limit of them at once.
type bufferPool struct {
	size  int
	limit int // buffers that may exist at once
	warm  int // buffers that must stay available for a warm chunk to be made

	mu       sync.Mutex
	mapped   int // buffers that exist or are being mapped
	free     []*buffer
	waiters  []*bufWaiter
	pressure chan struct{} // closed while a needed buffer waits
	retired  bool          // SetTuning replaced the pool: unmap what comes back
	inUse    int
	peak     int
	reclaim  bool // the reclaim goroutine runs
	idleSoon bool // releaseIdle is scheduled

	nWaiting atomic.Int32
	waits    atomic.Int64
}

func newBufferPool(size int, bytes int64) *bufferPool {
	limit := max(int(bytes/int64(size)), 1)
	return &bufferPool{size: size, limit: limit, warm: max(limit/bufReserve, 1) + 1, pressure: make(chan struct{})}
}

// poisonFreed fills every buffer given back with poisonByte (tests: a
// reply still written from a buffer after it was given back shows as
// wrong bytes, not as bytes that happen to be right).
var poisonFreed atomic.Bool

const poisonByte = 0xdb

// noReclaim turns reclaimBuffers off (tests: what waits without it).
var noReclaim atomic.Bool

// getBuf returns a buffer of Tuning.ChunkSize with one reference, the
// caller's; a reader waits for it (no cancellation).
func getBuf() *buffer {
	b, _ := tun().bufs.get(context.Background(), func() bufClass { return classNeeded }, nil)
	return b
}

// get returns a buffer with one reference, waiting while the bound is
// reached, until ctx ends. trim, if set, is called (once) when the wait has
// been under pressure for reclaimGrace: the caller lets go of what it
// holds and does not need.
func (p *bufferPool) get(ctx context.Context, class func() bufClass, trim func()) (*buffer, error) {
	p.mu.Lock()
	if len(p.waiters) == 0 && p.available() > p.needs(class()) {
		b := p.take()
		p.mu.Unlock()
		return p.ready(b), nil
	}
	w := &bufWaiter{class: class, got: make(chan *buffer, 1)}
	p.waiters = append(p.waiters, w)
	p.nWaiting.Add(1)
	p.waits.Add(1)
	p.dispatch()
	press := p.pressure
	p.mu.Unlock()
	if trim == nil {
		press = nil
	}
	var grace <-chan time.Time
	for {
		select {
		case b := <-w.got:
			return p.ready(b), nil
		case <-press:
			press, grace = nil, time.After(reclaimGrace)
		case <-grace:
			grace = nil
			trim()
		case <-ctx.Done():
			p.mu.Lock()
			if p.dropWaiter(w) {
				p.dispatch()
				p.mu.Unlock()
				return nil, ctx.Err()
			}
			p.mu.Unlock()
			// Handed one meanwhile: give it back.
			if b := p.ready(<-w.got); b != nil {
				b.unref()
			}
			return nil, ctx.Err()
		}
	}
}

// available is how many buffers could be handed out now.
func (p *bufferPool) available() int { return len(p.free) + p.limit - p.mapped }

// needs is how many buffers must be available for one of class c to be
// handed out: warm chunks leave a reserve.
func (p *bufferPool) needs(c bufClass) int {
	if c == classWarm {
		return p.warm - 1
	}
	return 0
}

// take removes a free buffer, or counts one to be mapped (nil). p.mu held.
func (p *bufferPool) take() *buffer {
	p.inUse++
	p.peak = max(p.peak, p.inUse)
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free = p.free[:n-1]
		return b
	}
	p.mapped++
	return nil
}

// ready maps b if it is a new one and gives it its first reference.
func (p *bufferPool) ready(b *buffer) *buffer {
	if b == nil {
		b = &buffer{b: mapBuffer(p.size), pool: p}
	}
	b.refs.Store(1)
	return b
}

// put takes a buffer back: to the most urgent waiter, or the free list.
func (p *bufferPool) put(b *buffer) {
	if poisonFreed.Load() {
		for i := range b.b {
			b.b[i] = poisonByte
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inUse--
	if p.retired && len(p.waiters) == 0 {
		p.mapped--
		unmapBuffer(b.b)
		return
	}
	p.free = append(p.free, b)
	p.dispatch()
	if p.inUse == 0 && !p.idleSoon {
		p.idleSoon = true
		time.AfterFunc(idleUnmap, p.releaseIdle)
	}
}

// idleUnmap is how long the buffers stay mapped after the last one came
// back: a reader going from one file to the next keeps them, a mount
// with nothing to read gives their memory back.
const idleUnmap = time.Second

// releaseIdle unmaps the free buffers if none is in use.
func (p *bufferPool) releaseIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.idleSoon = false
	if p.inUse > 0 || len(p.waiters) > 0 {
		return
	}
	for _, b := range p.free {
		unmapBuffer(b.b)
		p.mapped--
	}
	clear(p.free)
	p.free = p.free[:0]
}

// poke hands out buffers again after a waiter's class may have changed (a
// Reader started waiting for its producer's chunk).
func (p *bufferPool) poke() {
	if p.nWaiting.Load() == 0 {
		return
	}
	p.mu.Lock()
	p.dispatch()
	p.mu.Unlock()
}

// dispatch hands available buffers to waiters, most urgent class first,
// in order of arrival within a class, and opens or ends the pressure.
// p.mu held.
func (p *bufferPool) dispatch() {
	for len(p.waiters) > 0 {
		best, bestClass := -1, classWarm
		for i, w := range p.waiters {
			if c := w.class(); best < 0 || c > bestClass {
				best, bestClass = i, c
			}
		}
		if p.available() <= p.needs(bestClass) {
			break
		}
		w := p.waiters[best]
		p.dropWaiter(w)
		w.got <- p.take()
	}
	pressed := false
	for _, w := range p.waiters {
		if w.class() == classNeeded {
			pressed = true
			break
		}
	}
	select {
	case <-p.pressure:
		if !pressed {
			p.pressure = make(chan struct{})
		}
	default:
		if pressed {
			close(p.pressure)
		}
	}
	if pressed && !p.reclaim && !noReclaim.Load() {
		p.reclaim = true
		go p.runReclaim()
	}
}

// dropWaiter removes w; it reports whether w was still waiting. p.mu held.
func (p *bufferPool) dropWaiter(w *bufWaiter) bool {
	for i, x := range p.waiters {
		if x == w {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			p.nWaiting.Add(-1)
			return true
		}
	}
	return false
}

// pressed reports whether a needed buffer waits now.
func (p *bufferPool) pressed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.pressure:
		return true
	default:
		return false
	}
}

// pressureChan is closed while the pool is under pressure.
func (p *bufferPool) pressureChan() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pressure
}

// runReclaim takes buffers back until the pressure ends. When nothing
// can be taken now it looks again a little later: replies end, and
// Readers become idle.
func (p *bufferPool) runReclaim() {
	for p.pressed() {
		if !reclaimBuffers() {
			time.Sleep(reclaimPoll)
		}
	}
	p.mu.Lock()
	p.reclaim = false
	p.mu.Unlock()
}

// reclaimPoll is how often runReclaim looks again while nothing can be
// taken back: short against a reader's wait, long against the work of a
// look (every open Reader). reclaimGrace is how long a Reader waiting for
// its next chunk waits for buffers to come back by themselves before it
// lets go of the chunks it holds.
const (
	reclaimPoll  = 5 * time.Millisecond
	reclaimGrace = 4 * reclaimPoll
)

// retire unmaps p's free buffers; the ones in use are unmapped as they
// come back. SetTuning replaced p.
func (p *bufferPool) retire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.retired = true
	if len(p.waiters) == 0 {
		for _, b := range p.free {
			unmapBuffer(b.b)
			p.mapped--
		}
		p.free = nil
	}
}

// mapBuffer maps size bytes outside the Go heap (on the heap if the
// kernel refuses: still counted by the pool). The pages are populated at
// once: one call instead of a page fault per page at the first fill.
func mapBuffer(size int) []byte {
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE|unix.MAP_POPULATE)
	if err != nil {
		return make([]byte, size)
	}
	mappedChanged(int64(size))
	return b
}

// unmapBuffer unmaps b.
func unmapBuffer(b []byte) {
	if unix.Munmap(b) != nil {
		return // a heap fallback: the GC has it
	}
	mappedChanged(-int64(len(b)))
}

// buffersMapped is the bytes of chunk buffers mapped now, all pools.
var buffersMapped atomic.Int64

func mappedChanged(delta int64) { buffersMapped.Add(delta) }

// BufferStats is what the chunk buffers hold and held.
type BufferStats struct {
	Limit, InUse, Peak int   // buffers
	Size               int   // bytes each
	Waits              int64 // gets that had to wait
	Mapped             int64 // bytes mapped now, all pools
}

// Buffers returns the chunk buffers' figures for the tuning in force.
func Buffers() BufferStats {
	p := tun().bufs
	p.mu.Lock()
	defer p.mu.Unlock()
	return BufferStats{Limit: p.limit, InUse: p.inUse, Peak: p.peak, Size: p.size, Waits: p.waits.Load(), Mapped: buffersMapped.Load()}
}

// readers is every open Reader (warm ones too), for reclaimBuffers.
var readers = readerSet{m: map[*Reader]struct{}{}}

type readerSet struct {
	mu sync.Mutex
	m  map[*Reader]struct{}
}

func (s *readerSet) add(r *Reader) {
	s.mu.Lock()
	s.m[r] = struct{}{}
	s.mu.Unlock()
}

func (s *readerSet) remove(r *Reader) {
	s.mu.Lock()
	delete(s.m, r)
	s.mu.Unlock()
}

// reclaimBuffers takes buffers back for a reader waiting for one: the
// oldest warm stream is stopped, or if there is none, every Reader not in
// a read and not read for Tuning.WarmEvictAfter lets its held chunks and
// its read-ahead go (readers being read free theirs as they are served,
// and let them go themselves if they wait: waitChunk). It reports whether
// it let anything go.
func reclaimBuffers() bool {
	if evictOldestWarm() {
		return true
	}
	readers.mu.Lock()
	rs := make([]*Reader, 0, len(readers.m))
	for r := range readers.m {
		rs = append(rs, r)
	}
	readers.mu.Unlock()
	idle := tun().WarmEvictAfter
	freed := false
	for _, r := range rs {
		if !r.mu.TryLock() { // in a read: it lets go itself if it waits
			continue
		}
		if r.letGo(idle) {
			freed = true
		}
		r.mu.Unlock()
	}
	return freed
}
