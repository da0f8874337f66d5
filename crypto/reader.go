package crypto

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"sync/atomic"
	"time"
)

// Reader reads a File for one open file handle. It keeps the stream of
// its last read (see the package doc) and serializes concurrent reads,
// which share that stream.
type Reader struct {
	f      *File
	ctx    context.Context // until Close: the lifetime of its streams
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	held   []*chunk  // chunks made and not yet wholly served, and the newest unless let go; oldest first
	end    int64     // where the stream continues: the end of the newest chunk made
	idle   *cursor   // the stream after a seek, at streamEnd, not yet read ahead
	prod   *producer // the stream read ahead, at streamEnd
	warm   bool      // prod was started by File.Warm and nothing read from it yet
	open   bool      // counted in f.open (made by NewReader, not yet closed)
	// pending is the Data a ReadData is gathering: if it must wait for a
	// buffer when they are short, it lets go of the ones it has (unpin).
	pending *Data

	// lastRead is when a read last ended (UnixNano): a Reader not read
	// for a while gives its buffers up when they are short (letGo).
	lastRead atomic.Int64
}

// NewReader returns a Reader; Close it to stop its read-ahead and release
// its source stream. It adopts the File's warm stream if there is one.
func (f *File) NewReader() *Reader {
	r := f.takeWarm()
	if r == nil {
		r = f.newReader()
	} else {
		warmHits.Add(1)
		r.mu.Lock()
		if r.prod != nil {
			r.prod.want()
		}
		r.mu.Unlock()
	}
	r.open = true
	f.open.Add(1)
	return r
}

func (f *File) newReader() *Reader {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Reader{f: f, ctx: ctx, cancel: cancel}
	r.lastRead.Store(time.Now().UnixNano())
	readers.add(r)
	return r
}

// Close stops the read-ahead, closes the source stream and frees the
// buffers. A read still running fails; later reads get fs.ErrClosed.
func (r *Reader) Close() error {
	r.cancel() // first: aborts a source read a ReadAt may be blocked in
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.open {
		r.f.open.Add(-1)
		r.open = false
	}
	if !r.closed {
		readers.remove(r)
	}
	r.closed = true
	r.stop()
	r.freeHeld(0)
	return nil
}

// ReadAt reads len(p) bytes of ciphertext at off, with io.ReaderAt's
// contract: a short read only at the end of the File, with io.EOF. ctx
// bounds this call; the read-ahead it starts lives until Close or a seek.
func (r *Reader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	d, err := r.ReadData(ctx, off, len(p))
	defer d.Release()
	n := 0
	for _, s := range d.Slices {
		n += copy(p[n:], s)
	}
	if err == nil && (n < len(p) || off >= r.f.size) {
		err = io.EOF
	}
	return n, err
}

// Data is ciphertext handed out without a copy: slices of the Reader's
// chunk buffers, which stay valid (and are not reused) until Release.
type Data struct {
	Slices [][]byte
	bufs   []*buffer
}

// Len is the number of bytes in d.
func (d *Data) Len() int {
	n := 0
	for _, s := range d.Slices {
		n += len(s)
	}
	return n
}

// Release gives the buffers back; d is empty afterwards. It may be called
// from any goroutine, and more than once.
func (d *Data) Release() {
	for _, b := range d.bufs {
		b.unref()
	}
	*d = Data{}
}

// ReadData is ReadAt without the copy: up to n bytes of ciphertext at off,
// fewer only at the end of the File (then with no error: a Data shorter
// than n means EOF). The caller must Release the Data, also on error (it
// then holds what was read before the error). This is how the FUSE layer
// replies: writev(2) straight from the chunks the cipher wrote.
func (r *Reader) ReadData(ctx context.Context, off int64, n int) (Data, error) {
	var d Data
	if off < 0 {
		return d, fmt.Errorf("crypto: negative offset %d", off)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.lastRead.Store(time.Now().UnixNano())
	if r.closed {
		return d, fmt.Errorf("crypto: read after Close: %w", fs.ErrClosed)
	}
	end := min(off+int64(n), r.f.size)
	r.pending = &d
	defer func() { r.pending = nil }()
	for pos := off; pos < end; {
		c := r.find(pos)
		if c == nil {
			if err := r.fetch(ctx, pos, end-pos); err != nil {
				return d, err
			}
			continue
		}
		s := c.data[pos-c.off : min(end, c.end())-c.off]
		c.buf.ref()
		c.served += len(s)
		d.Slices, d.bufs = append(d.Slices, s), append(d.bufs, c.buf)
		pos += int64(len(s))
	}
	r.dropServed()
	return d, nil
}

// unpin makes the Data being gathered hold copies instead of chunk
// buffers, when it must wait for a buffer while they are short: a request
// (up to a MiB, over several chunks) then holds none of them while it
// waits, so requests waiting for each other's buffers cannot all stall.
func (r *Reader) unpin() {
	d := r.pending
	if d == nil || len(d.bufs) == 0 {
		return
	}
	flat := make([]byte, 0, d.Len())
	for _, s := range d.Slices {
		flat = append(flat, s...)
	}
	d.Release()
	d.Slices = [][]byte{flat}
}

// pinned reports whether the Data being gathered holds chunk buffers.
func (r *Reader) pinned() bool { return r.pending != nil && len(r.pending.bufs) > 0 }

// letGoWaiting lets go of what r holds and does not need while it waits
// for a buffer that is short: the held chunks but the first keep (ones
// the waiting request made), and the Data being gathered (unpin).
func (r *Reader) letGoWaiting(keep int) {
	r.freeHeld(keep)
	r.unpin()
}

// find returns the held chunk holding pos, if any.
func (r *Reader) find(pos int64) *chunk {
	for _, c := range r.held {
		if c.contains(pos) {
			return c
		}
	}
	return nil
}

// dropServed lets go of the chunks every byte of which has been served,
// but the newest (a re-read of what was just read costs nothing).
func (r *Reader) dropServed() {
	kept := r.held[:0]
	for i, c := range r.held {
		if c.served >= len(c.data) && i < len(r.held)-1 {
			c.free()
			continue
		}
		kept = append(kept, c)
	}
	clear(r.held[len(kept):])
	r.held = kept
}

// fetch makes a held chunk hold pos. A read right at the end of the stream is
// sequential: it starts (or uses) the read-ahead. A short forward jump
// continues the stream, discarding what lies between, instead of seeking:
// the kernel's read-ahead requests do not always arrive in order, and a
// short skip is cheaper than a new request. A producer has chunks made
// already, so it may skip further (Tuning.SkipAhead); an idle stream (after
// a seek) skips less (Tuning.IdleSkip), synchronously, and without starting
// the read-ahead: only a read exactly at its end does, so that random reads
// never pay for read-ahead they throw away. A request a little behind the
// stream (Tuning.LateBehind), whose chunk has gone, is read aside, leaving
// the stream where it is. Anything else seeks.
func (r *Reader) fetch(ctx context.Context, pos, want int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t := tun()
	gap := pos - r.streamEnd()
	switch {
	case r.prod != nil && gap >= 0 && gap < t.SkipAhead:
		err := r.receive(ctx, pos)
		if err != nil && r.warm && ctx.Err() == nil {
			// A warm stream failed before this reader asked for it
			// (the store was away a moment ago): one fresh try.
			r.warm = false
			return r.fetch(ctx, pos, want)
		}
		r.warm = false
		return err
	case r.idle != nil && gap == 0:
		// Reading is sequential: the rest of the part is wanted, so the
		// next window is the largest, not one of a doubling series (fewer
		// GETs per segment; MinIO pays per request).
		r.idle.setWindow(t.MaxWindow)
		r.prod = startProducer(r.idle, false)
		r.idle = nil
		return r.receive(ctx, pos)
	case pos == 0 && r.fresh():
		// The first read of a file at its start is nearly always the
		// start of a sequential read (players, cat, nginx): stream at
		// once, one request per segment instead of two.
		r.startStream(0, false)
		return r.receive(ctx, pos)
	case (r.prod != nil || r.idle != nil) && gap < 0 && -gap <= t.LateBehind:
		return r.aside(ctx, pos, want)
	case r.idle != nil && gap > 0 && gap < t.IdleSkip:
		c := r.idle
		r.idle = nil
		return r.advance(ctx, c, pos, want)
	}
	return r.seek(ctx, pos, want)
}

// fresh reports whether r has made nothing yet.
func (r *Reader) fresh() bool {
	return r.prod == nil && r.idle == nil && len(r.held) == 0
}

// startStream starts the read-ahead at part idx's start, its windows the
// largest from the first; a deep one (warm) may run far ahead. Called
// with r.mu held (or r not yet shared).
func (r *Reader) startStream(idx int, deep bool) {
	c := newCursor(r.ctx, r.f, idx, 0)
	c.setWindow(tun().MaxWindow)
	r.prod = startProducer(c, deep)
}

// Streaming reports whether r is reading ahead: its reads have been
// sequential.
func (r *Reader) Streaming() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.prod != nil
}

// receive takes chunks from the producer until the newest holds pos.
// While it waits, the producer's buffer is one a reader needs; if buffers
// are short, the held chunks (all behind pos) are let go.
func (r *Reader) receive(ctx context.Context, pos int64) error {
	p := r.prod
	defer p.needy.Store(false)
	for pos >= r.streamEnd() {
		var c chunk
		var ok bool
		select {
		case c, ok = <-p.ch:
		default:
			var err error
			if c, ok, err = r.waitChunk(ctx, p); err != nil {
				return err
			}
		}
		p.needy.Store(false)
		if !ok { // only at the end of the File, which pos is before
			r.stop()
			return errors.New("crypto: read-ahead ended before the requested offset")
		}
		p.release(c.ahead)
		if c.err != nil {
			err := c.err
			c.free()
			r.stop()
			return err
		}
		r.rotate(&c)
	}
	return nil
}

// waitChunk waits for p's next chunk, whose buffer is now one a reader
// needs. If buffers are short and stay so for reclaimGrace (most come
// back in a moment, as other readers' replies end), r lets go of what it
// holds: its held chunks (a late request for one is read aside) and the
// Data being gathered (unpin).
func (r *Reader) waitChunk(ctx context.Context, p *producer) (chunk, bool, error) {
	bufs := tun().bufs
	if !p.needy.Swap(true) {
		bufs.poke() // its buffer, if it waits for one, is needed now
	}
	var press <-chan struct{}
	if len(r.held) > 0 || r.pinned() {
		press = bufs.pressureChan()
	}
	var grace <-chan time.Time
	for {
		select {
		case c, ok := <-p.ch:
			return c, ok, nil
		case <-ctx.Done():
			return chunk{}, false, ctx.Err()
		case <-press:
			press, grace = nil, time.After(reclaimGrace)
		case <-grace:
			grace = nil
			r.letGoWaiting(0)
		}
	}
}

// seek produces the chunk holding pos from the checkpoint (CBC) or block
// at or before it, with a new stream whose first window reaches from there
// to the end of the request.
func (r *Reader) seek(ctx context.Context, pos, want int64) error {
	r.stop()
	c, release, err := r.cursorFor(ctx, r.ctx, pos, want)
	if err != nil {
		return err
	}
	defer release()
	return r.advance(ctx, c, pos, want)
}

// cursorFor makes a cursor (living in parent) at the CBC checkpoint or
// block at or before pos, its first window covering just the request: a
// random read fetches no more than it needs (and its body is read to the
// end, so the connection is reused); if reading goes on sequentially the
// next window is the largest (fetch). A CBC start far past the known
// checkpoints waits for other readers walking the same chain, so
// concurrent readers encrypt a part's prefix once between them; release
// ends that turn.
func (r *Reader) cursorFor(ctx, parent context.Context, pos, want int64) (*cursor, func(), error) {
	idx, rel := r.f.locate(pos)
	fp := r.f.parts[idx]
	release := func() {}
	if fp.cps != nil {
		var err error
		if release, err = fp.cps.claimWalk(ctx, blockStart(rel)); err != nil {
			return nil, nil, err
		}
	}
	c := newCursor(parent, r.f, idx, rel)
	c.setWindow(max(requestEnd(rel, want, fp.outSize)-c.pos, blockSize))
	return c, release, nil
}

// aside serves a request a little behind the stream whose chunk has been
// let go (a kernel request that arrived after the next ones: go-fuse
// serves each in its own goroutine) with a synchronous read of just that
// request, from the CBC checkpoint or block before it, and leaves the
// stream running. A seek would stop the stream here and the next request,
// back at the stream's end, would start it again from there: the bytes
// between fetched twice, and a round trip each time (bench: a cold cat
// fetched 1.14x what it read).
func (r *Reader) aside(ctx context.Context, pos, want int64) error {
	c, release, err := r.cursorFor(ctx, ctx, pos, want)
	if err != nil {
		return err
	}
	defer release()
	defer c.close()
	// The request may span several chunks: they are made one after
	// another from c's one window (a round trip each at real S3 latency
	// otherwise), up to the request's end or a chunk already held.
	made := 0
	for end := pos + want; ; {
		// Short of buffers, the chunks held from before may go, and the
		// read-ahead; the ones made here (the first made of r.held) are
		// this request's. With some made, it ends here instead of waiting
		// holding them: the caller serves them and asks again.
		bufs := tun().bufs
		if made > 0 && bufs.pressed() {
			return nil
		}
		buf, err := bufs.get(ctx, needed, func() { r.letGoWaiting(made); r.stop() })
		if err != nil {
			return err
		}
		off, data, err := c.chunkAt(pos, end-pos, buf.b)
		if err != nil {
			buf.unref()
			return err
		}
		made++
		// Held as the oldest chunk: the newest stays the stream's end.
		ch := &chunk{off: off, data: data, buf: buf, served: int(unasked(off, int64(len(data)), pos, end-pos))}
		r.held = append([]*chunk{ch}, r.held...)
		if pos = ch.end(); pos >= end || r.find(pos) != nil {
			return nil
		}
	}
}

// advance produces the chunk holding pos with cursor c, synchronously,
// and keeps c as the idle stream in case reading goes on from there.
func (r *Reader) advance(ctx context.Context, c *cursor, pos, want int64) error {
	// The stream outlives this request, but must not outlast its
	// cancellation while the request waits on it.
	unwatch := context.AfterFunc(ctx, c.cancel)
	buf, err := tun().bufs.get(ctx, needed, func() { r.letGoWaiting(0) })
	if err != nil {
		unwatch()
		c.close()
		return err
	}
	off, data, err := c.chunkAt(pos, want, buf.b)
	kept := unwatch()
	if err != nil {
		buf.unref()
		c.close()
		return err
	}
	// Bytes made only because a chunk starts at a block (or a CBC
	// checkpoint's chain) and ends at one count as served: nobody asked
	// for them, so the chunk can go once the request's bytes are sent.
	r.rotate(&chunk{off: off, data: data, buf: buf, served: int(unasked(off, int64(len(data)), pos, want))})
	if kept {
		r.idle = c
	} else {
		c.close()
	}
	return nil
}

// rotate makes c the newest chunk; the oldest goes when
// Tuning.MaxHeldChunks are held. The bound is for requests that arrive out
// of order: the kernel has several read-ahead requests in flight and
// go-fuse serves each in its own goroutine, so a request may come after
// the stream has gone past it. A chunk is let go once every byte of it has
// been served (dropServed), so in order only the newest is kept.
func (r *Reader) rotate(c *chunk) {
	for len(r.held) >= max(tun().MaxHeldChunks, 1) {
		r.held[0].free()
		r.held = append(r.held[:0], r.held[1:]...)
	}
	r.held = append(r.held, c)
	r.end = c.end()
}

// streamEnd is where the stream continues: the end of the newest chunk
// made (held until a newer one comes, or let go when buffers are short),
// 0 before the first.
func (r *Reader) streamEnd() int64 { return r.end }

// needed is the class of a buffer a reader waits for.
func needed() bufClass { return classNeeded }

// freeHeld lets go of the held chunks but the first keep. A late request
// for one of them is then read aside; the stream goes on from r.end.
func (r *Reader) freeHeld(keep int) {
	if keep >= len(r.held) {
		return
	}
	for _, c := range r.held[keep:] {
		c.free()
	}
	clear(r.held[keep:])
	r.held = r.held[:keep]
}

// letGo gives up r's buffers when they are short, if r has not been read
// for idle (the caller holds r.mu, got with TryLock): its held chunks and
// its read-ahead. It reports whether it let anything go.
func (r *Reader) letGo(idle time.Duration) bool {
	if r.closed || r.warm {
		return false
	}
	if time.Since(time.Unix(0, r.lastRead.Load())) < idle {
		return false
	}
	freed := len(r.held) > 0 || r.prod != nil
	r.freeHeld(0)
	r.stop()
	return freed
}

// stop ends the stream: the producer or the idle cursor.
func (r *Reader) stop() {
	if r.prod != nil {
		r.prod.stop()
		r.prod = nil
	}
	if r.idle != nil {
		r.idle.close()
		r.idle = nil
	}
}
