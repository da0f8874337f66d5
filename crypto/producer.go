package crypto

import (
	"errors"
	"io"
	"sync/atomic"
)

// The read-ahead bound. A producer holds at most one chunk
// (Tuning.ChunkSize) being made (or waiting to be sent) and chunkQueue
// chunks in its channel (a warm one more, from the shared ahead budget);
// the Reader holds the chunks not yet wholly served
// (Tuning.MaxHeldChunks at most, in order just one).
const chunkQueue = 1

// chunk is ciphertext at File offset off, in a chunk buffer (buffers.go).
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
	// needy: its Reader waits for its next chunk now (receive), so a
	// buffer for it is needed, not ahead.
	needy atomic.Bool
	class func() bufClass // bufClassOf, made once
}

// bufClassOf is what p's next buffer is for (buffers.go): a warm stream's
// chunk until a reader adopts the stream, a chunk its reader waits for,
// or one made ahead.
func (p *producer) bufClassOf() bufClass {
	switch {
	case p.deep && !p.wanted.Load():
		return classWarm
	case p.needy.Load():
		return classNeeded
	}
	return classAhead
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
	p.class = p.bufClassOf
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
		buf, err := tun().bufs.get(p.c.ctx, p.class, nil)
		if err != nil { // stopped while waiting for a buffer
			p.release(ahead)
			return
		}
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
// goes at once, and a buffer it waits for is no longer a warm one.
func (p *producer) want() {
	if p.c.patient && !p.wanted.Swap(true) {
		pokeLanes()
		tun().bufs.poke()
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
