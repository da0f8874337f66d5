package fs

import (
	"context"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/mpcfs/mpcfs/crypto"
	"github.com/mpcfs/mpcfs/internal/metrics"
)

// readOnlyOpen are the open flags of every file read from buckets/: keep
// the kernel's page cache across opens (the content of an inode never
// changes), and no FLUSH request on close (nothing is ever written), one
// round trip less per file.
const readOnlyOpen = fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH

// readHandle is one open object or segment output. Its crypto.Reader keeps
// the sequential stream and read-ahead of this open file.
type readHandle struct {
	r    *crypto.Reader
	opts *Options
	name string // for log lines
	kind string // metrics.Kind*
	size int64

	// warmNext, if set, starts the next segments of the playlist; called
	// once, when the handle has read Tuning.WarmAfter bytes in sequence
	// (or is within Tuning.WarmLead of its end): a segment read that far
	// in sequence is being played or copied, not probed, and the next
	// ones are warmed then, so that they are encrypted alongside
	// (crypto.File.Warm).
	warmNext func()
	warmed   atomic.Bool
}

func newReadHandle(f *crypto.File, opts *Options, name, kind string) *readHandle {
	metrics.OpenFiles.WithLabelValues(kind).Inc()
	return &readHandle{r: f.NewReader(), opts: opts, name: name, kind: kind, size: f.Size()}
}

func (h *readHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	start := time.Now()
	d, err := h.r.ReadData(ctx, off, len(dest))
	if err != nil {
		d.Release()
		if ctx.Err() == nil {
			h.opts.Log.Printf("reading %s at %d: %v", h.name, off, err)
		}
		return nil, readErrno(err)
	}
	n := d.Len()
	metrics.ObserveRead(h.kind, n, start)
	if end := off + int64(n); h.warmNext != nil && (end >= h.opts.Tuning.WarmAfter || end+h.opts.Tuning.WarmLead >= h.size) && !h.warmed.Load() && h.r.Streaming() {
		if !h.warmed.Swap(true) {
			h.warmNext()
		}
	}
	return &dataResult{d: d}, 0
}

// dataResult replies to a FUSE read straight from the crypto.Reader's
// chunks: go-fuse writes a ReadResult that has Slices with one writev(2)
// of header and slices (no copy into its buffer, no splice pipe), then
// calls Done, which lets the chunks be reused.
type dataResult struct{ d crypto.Data }

func (r *dataResult) Slices() ([][]byte, fuse.Status) { return r.d.Slices, fuse.OK }
func (r *dataResult) Size() int                       { return r.d.Len() }
func (r *dataResult) Done()                           { r.d.Release() }

// Bytes is for go-fuse paths that want one buffer.
func (r *dataResult) Bytes(buf []byte) ([]byte, fuse.Status) {
	if len(r.d.Slices) == 1 {
		return r.d.Slices[0], fuse.OK
	}
	buf = buf[:0]
	for _, s := range r.d.Slices {
		buf = append(buf, s...)
	}
	return buf, fuse.OK
}

// readErrno is what read(2) returns: EINTR when the reader gave up, else
// EIO (store unreachable, source changed or deleted since the task ran):
// never ENOENT for a file that is open, never wrong bytes.
func readErrno(err error) syscall.Errno {
	if isContextErr(err) {
		return syscall.EINTR
	}
	return syscall.EIO
}

func (h *readHandle) Release(ctx context.Context) syscall.Errno {
	h.r.Close()
	metrics.OpenFiles.WithLabelValues(h.kind).Dec()
	return 0
}

// bytesHandle serves an in-memory snapshot (playlists, control files).
type bytesHandle struct {
	data []byte
	kind string // metrics.KindPlaylist for output playlists; "" is not counted
}

// newPlaylistHandle serves an output playlist, counted in the metrics.
func newPlaylistHandle(data []byte) *bytesHandle {
	metrics.OpenFiles.WithLabelValues(metrics.KindPlaylist).Inc()
	return &bytesHandle{data: data, kind: metrics.KindPlaylist}
}

func (h *bytesHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= int64(len(h.data)) {
		return fuse.ReadResultData(nil), 0
	}
	end := min(off+int64(len(dest)), int64(len(h.data)))
	if h.kind != "" {
		metrics.ObserveRead(h.kind, int(end-off), time.Now())
	}
	return fuse.ReadResultData(h.data[off:end]), 0
}

func (h *bytesHandle) Release(ctx context.Context) syscall.Errno {
	if h.kind != "" {
		metrics.OpenFiles.WithLabelValues(h.kind).Dec()
	}
	return 0
}
