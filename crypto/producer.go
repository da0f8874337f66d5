package crypto

import (
	"errors"
	"io"
	"sync"
)

// The read-ahead bound. A producer holds at most one chunk being made (or
// waiting to be sent) and chunkQueue chunks in its channel; the Reader
// holds two more (cur and prev). With 512 KiB chunks that is 2 MiB per
// open file, of which 1 MiB is ahead of the reader.
const (
	chunkSize  = 512 << 10 // a multiple of blockSize
	chunkQueue = 1
)

// bufPool recycles chunk buffers: a sequential read allocates none.
var bufPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

func getBuf() *[]byte  { return bufPool.Get().(*[]byte) }
func putBuf(b *[]byte) { bufPool.Put(b) }

// chunk is ciphertext at File offset off, in a pooled buffer.
type chunk struct {
	off  int64
	data []byte
	buf  *[]byte
	err  error // the producer failed here; data is empty
}

func (c *chunk) contains(pos int64) bool {
	return pos >= c.off && pos < c.end()
}

func (c *chunk) end() int64 { return c.off + int64(len(c.data)) }

// free returns the buffer and empties the chunk.
func (c *chunk) free() {
	if c.buf != nil {
		putBuf(c.buf)
	}
	*c = chunk{}
}

// producer encrypts ahead of a sequential reader in its own goroutine,
// so that encryption (the cost of CBC) overlaps the reader's copying and
// the kernel's handling of the previous read.
type producer struct {
	c    *cursor // owned by the goroutine until done
	ch   chan chunk
	done chan struct{}
}

// startProducer hands the cursor to a new producer goroutine.
func startProducer(c *cursor) *producer {
	p := &producer{c: c, ch: make(chan chunk, chunkQueue), done: make(chan struct{})}
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
		buf := getBuf()
		off, data, err := p.c.next(*buf)
		if errors.Is(err, io.EOF) {
			putBuf(buf)
			return
		}
		select {
		case p.ch <- chunk{off: off, data: data, buf: buf, err: err}:
		case <-p.c.ctx.Done():
			putBuf(buf)
			return
		}
		if err != nil {
			return
		}
	}
}

// stop cancels the producer (aborting its source read), recycles what it
// queued and waits for its goroutine to end.
func (p *producer) stop() {
	p.c.cancel()
	for c := range p.ch {
		c.free()
	}
	<-p.done
}
