package crypto

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// The read-ahead bound. A producer holds at most one chunk
// (Tuning.ChunkSize) being made (or waiting to be sent) and chunkQueue
// chunks in its channel (a warm one more, from the shared ahead budget);
// the Reader holds the chunks not yet wholly served
// (Tuning.MaxHeldChunks at most, in order just one).
const chunkQueue = 1

// bufPool recycles chunk buffers: a sequential read allocates none.
var bufPool = sync.Pool{New: func() any { return &buffer{} }}

// buffer is a pooled chunk buffer. It is counted: the Reader holds one
// reference while it holds the chunk, and each Data handed out (a FUSE
// reply being written straight from it) holds one more, so a chunk the
// Reader lets go is not reused while the kernel still copies it.
type buffer struct {
	b    []byte
	refs atomic.Int32
}

// getBuf returns a buffer of Tuning.ChunkSize with one reference, the
// caller's.
func getBuf() *buffer {
	b := bufPool.Get().(*buffer)
	if size := tun().ChunkSize; len(b.b) != size { // new, or the tuning changed
		b.b = make([]byte, size)
	}
	b.refs.Store(1)
	return b
}

func (b *buffer) ref() { b.refs.Add(1) }

// unref drops a reference; the last one returns the buffer to the pool.
func (b *buffer) unref() {
	switch n := b.refs.Add(-1); {
	case n == 0:
		bufPool.Put(b)
	case n < 0:
		panic("crypto: chunk buffer released twice")
	}
}

// chunk is ciphertext at File offset off, in a pooled buffer.
type chunk struct {
	off   int64
	data  []byte
	buf   *buffer
	err   error // the producer failed here; data is empty
	ahead bool  // it holds a token of aheadTokens while queued

	served int // bytes of data handed out by the Reader (they may go)
}

func (c *chunk) contains(pos int64) bool {
	return pos >= c.off && pos < c.end()
}

func (c *chunk) end() int64 { return c.off + int64(len(c.data)) }

// free returns the buffer and empties the chunk.
func (c *chunk) free() {
	if c.buf != nil {
		c.buf.unref()
	}
	*c = chunk{}
}

// The ahead budget (settings.aheadTokens, Tuning.WarmBudget) bounds,
// across all warm streams, the chunks made beyond each stream's own queue
// slot. A warm stream (a segment after the one being read, warm.go)
// encrypts on while the current segment is still being read, so that the
// lane engine has chains to interleave; what it makes waits in its
// channel until its reader arrives. Ordinary streams stay one chunk ahead.

// producer encrypts ahead of a sequential reader in its own goroutine,
// so that encryption (the cost of CBC) overlaps the reader's copying and
// the kernel's handling of the previous read.
type producer struct {
	c      *cursor       // owned by the goroutine until done
	deep   bool          // may take tokens (a warm stream)
	tokens chan struct{} // the ahead budget in force when it started
	space  chan struct{}
	ch     chan chunk
	done   chan struct{}
	// wanted: a reader reads the stream now (a warm one's chunks are
	// patient till then), or it is stopping: its chunks are encrypted at
	// once, not held for company.
	wanted atomic.Bool
}

// startProducer hands the cursor to a new producer goroutine. A deep one
// may run ahead into the shared budget.
func startProducer(c *cursor, deep bool) *producer {
	c.lanes = true
	tokens := tun().aheadTokens
	p := &producer{c: c, deep: deep, tokens: tokens, space: make(chan struct{}, chunkQueue),
		ch: make(chan chunk, chunkQueue+cap(tokens)), done: make(chan struct{})}
	if deep {
		c.patient, c.wanted = true, &p.wanted
	}
	go p.run()
	return p
}

// run sends chunks until the end of the File, an error (sent as the last
// chunk), or stop.
func (p *producer) run() {
	defer close(p.done)
	defer close(p.ch)
	defer p.c.close()
	for {
		ahead, ok := p.acquire()
		if !ok {
			return
		}
		buf := getBuf()
		lanes := p.c.usesLanes()
		if lanes {
			producing.Add(1)
		}
		off, data, err := p.c.next(buf.b)
		if lanes {
			producing.Add(-1)
		}
		if errors.Is(err, io.EOF) {
			buf.unref()
			p.release(ahead)
			return
		}
		// Never blocks: ch has room for every slot and token.
		p.ch <- chunk{off: off, data: data, buf: buf, err: err, ahead: ahead}
		if err != nil {
			return
		}
	}
}

// acquire waits for room for one more chunk: the producer's own slot, or
// (deep producers) a token of the shared budget. ahead says which.
func (p *producer) acquire() (ahead, ok bool) {
	select {
	case p.space <- struct{}{}:
		return false, true
	default:
	}
	tokens := p.tokens
	if !p.deep {
		tokens = nil // never ready
	}
	select {
	case p.space <- struct{}{}:
		return false, true
	case tokens <- struct{}{}:
		return true, true
	case <-p.c.ctx.Done():
		return false, false
	}
}

// release gives back the room a chunk took, once it left the queue.
func (p *producer) release(ahead bool) {
	if ahead {
		<-p.tokens
	} else {
		<-p.space
	}
}

// want says the stream's chunks are wanted as made: a reader opened the
// warm stream (it would otherwise wait for the encryption of a chunk held
// for company), or it is stopping. A chunk waiting in the lane engine
// goes at once.
func (p *producer) want() {
	if p.c.patient && !p.wanted.Swap(true) {
		pokeLanes()
	}
}

// stop cancels the producer (aborting its source read), recycles what it
// queued and waits for its goroutine to end.
func (p *producer) stop() {
	p.c.cancel()
	p.want() // a patient chunk in the engine ends now, not after its wait
	for c := range p.ch {
		p.release(c.ahead)
		c.free()
	}
	<-p.done
}
