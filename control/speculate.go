package control

import (
	"context"
	"io"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/mpcfs/mpcfs/internal/metrics"
	"github.com/mpcfs/mpcfs/store"
)

// A segment output's first byte on a mount that has not loaded its task
// waits for the task's record and plan (one task-store round trip) and
// then for its source's GET (another). The output's name says where its
// source most likely is (summary.SrcDir + name: the planner names a whole
// segment after its source's key below the input folder), so Open starts
// that GET beside the reads of record and plan: a speculation. The plan
// decides whether its bytes are used: only for the same object, read
// from its start, and only if the response's ETag is the one the plan
// recorded (a response carries one version of the object, so this is the
// guarantee the ETag-conditional GETs of Outputs.source give: ciphertext
// of a changed source is never served). Anything else is closed and the
// read goes on as without it.
//
// The task's file list is not in the catalogue either (docs/scale.md): a
// lookup of an output whose list is not loaded loads it with the record
// and plan, and speculates there already, so the lookup, the open and the
// first read wait one round trip in all, not three.
//
// Bounds: only a lookup that loads its task's list and an Open speculate
// (listings and stat of loaded tasks never do), only when the task's plan
// is not loaded, never for a playlist or MPD name, at most
// Tuning.Speculations at once, and a speculation not taken by its file's
// first source read within Tuning.SpeculationHold after its start, or after
// the open, is closed.
type speculation struct {
	bucket, key string
	output      string             // the output's bucket/key (specKey)
	cancel      context.CancelFunc // aborts the GET, or the body once taken

	mu      sync.Mutex
	arrived chan struct{} // closed when rc or err is set
	rc      io.ReadCloser
	err     error
	dropped bool // closed: a late response is closed as it comes
	hold    *time.Timer
}

// specKey names the speculation for an output.
func specKey(bucket, key string) string { return bucket + "/" + key }

// speculate starts the GET of o's most likely source (speculateAt).
func (x *Outputs) speculate(o *Output) {
	if !o.IsPlaylist() {
		x.speculateAt(o.task, o.Bucket, o.Key)
	}
}

// speculateAt starts the GET of the most likely source of task s's output
// bucket/key, unless s's plan is loaded, its source is unknown, the name
// is a playlist's or MPD's, another speculation for the output is
// waiting or the bound is reached. The GET reads the first source window
// (Tuning.MaxWindow, cut by the store to the object's end), as a
// sequential first read asks for.
func (x *Outputs) speculateAt(s *summary, bucket, key string) {
	if x.tun.Speculations <= 0 || s.SrcDir == "" || !strings.HasPrefix(key, s.OutObject+"/") {
		return
	}
	switch strings.ToLower(path.Ext(key)) {
	case ".m3u8", ".mpd":
		return
	}
	srcBucket, dir, ok := strings.Cut(s.SrcDir, "/")
	if !ok || srcBucket == "" {
		return
	}
	rel := key[len(s.OutObject)+1:]
	ctx, cancel := context.WithCancel(context.Background())
	out := specKey(bucket, key)
	sp := &speculation{bucket: srcBucket, key: dir + rel, output: out, cancel: cancel, arrived: make(chan struct{})}
	x.fmu.Lock()
	if x.plans.byID[s.ID] != nil || x.specs[out] != nil || len(x.specs) >= x.tun.Speculations {
		x.fmu.Unlock()
		cancel()
		return
	}
	x.specs[out] = sp
	sp.hold = time.AfterFunc(x.tun.SpeculationHold, func() { x.dropSpec(sp) })
	x.fmu.Unlock()
	x.specsStarted.Add(1)
	go func() {
		rc, err := x.st.Open(ctx, sp.bucket, sp.key, 0, x.tun.MaxWindow)
		sp.mu.Lock()
		sp.rc, sp.err = rc, err
		late := sp.dropped
		close(sp.arrived)
		sp.mu.Unlock()
		if late && rc != nil {
			rc.Close()
		}
	}()
}

// settle is called when o's Open is done (err: it failed). A speculation
// the plan rules out (another object, or a part that does not start at
// the object's start) is closed now; one that may serve waits
// SpeculationHold again for the file's first read.
func (x *Outputs) settle(o *Output, f *OutFile, err error) {
	x.fmu.Lock()
	sp := x.specs[specKey(o.Bucket, o.Key)]
	x.fmu.Unlock()
	if sp == nil {
		return
	}
	if err != nil || f == nil || len(f.Parts) == 0 || f.Parts[0].Key != sp.key || f.Parts[0].Off != 0 {
		x.dropSpec(sp)
		return
	}
	sp.mu.Lock()
	if !sp.dropped {
		sp.hold.Reset(x.tun.SpeculationHold)
	}
	sp.mu.Unlock()
}

// dropSpec closes a speculation not used: the GET is aborted, or its
// response closed (now, or as it arrives).
func (x *Outputs) dropSpec(sp *speculation) {
	x.fmu.Lock()
	if x.specs[sp.output] == sp {
		delete(x.specs, sp.output)
	}
	x.fmu.Unlock()
	sp.mu.Lock()
	if sp.dropped {
		sp.mu.Unlock()
		return
	}
	sp.dropped = true
	if sp.hold != nil {
		sp.hold.Stop()
	}
	rc := sp.rc
	sp.mu.Unlock()
	sp.cancel()
	if rc != nil {
		rc.Close()
	}
	x.specsDropped.Add(1)
	metrics.SpeculativeGets.WithLabelValues("dropped").Inc()
}

// takeSpec is the first source read of the output named out (specKey;
// bytes [off, off+n) of
// bucket/p.Key as planned): it returns the speculation's response for
// those bytes if the speculation was for them and the response is of the
// planned version, or nil (the caller GETs as usual). Either way the
// speculation is over. The response is waited for (it was asked before
// any GET the caller could make now) and stays bound to ctx.
func (x *Outputs) takeSpec(ctx context.Context, out, bucket string, p OutPart, off, n int64) io.ReadCloser {
	x.fmu.Lock()
	sp := x.specs[out]
	if sp != nil {
		delete(x.specs, out)
	}
	x.fmu.Unlock()
	if sp == nil {
		return nil
	}
	if sp.bucket != bucket || sp.key != p.Key || p.Off+off != 0 || n <= 0 {
		x.dropSpec(sp)
		return nil
	}
	select {
	case <-sp.arrived:
	case <-ctx.Done():
		x.dropSpec(sp)
		return nil
	}
	sp.mu.Lock()
	if sp.dropped || sp.err != nil {
		sp.mu.Unlock()
		x.dropSpec(sp)
		return nil
	}
	etag, length, ok := store.AnswerOf(sp.rc)
	if !ok || etag != p.ETag || length < n {
		sp.mu.Unlock()
		x.dropSpec(sp)
		return nil
	}
	if sp.hold != nil {
		sp.hold.Stop()
	}
	sp.dropped = true // taken: from now on the reader owns the body
	rc := sp.rc
	sp.mu.Unlock()
	x.specsUsed.Add(1)
	metrics.SpeculativeGets.WithLabelValues("used").Inc()
	// The reader's context aborts the body as it would its own GET's.
	stop := context.AfterFunc(ctx, sp.cancel)
	return &specBody{Reader: io.LimitReader(rc, n), rc: rc, done: func() { stop(); sp.cancel() }}
}

// specBody is a speculation's response handed to the reader that took
// it: the n bytes it asked for.
type specBody struct {
	io.Reader
	rc   io.ReadCloser
	done func()
}

func (b *specBody) Close() error {
	err := b.rc.Close()
	b.done()
	return err
}

// SpeculationCounts says how many speculative source GETs were started,
// used by a reader, and closed unused (for tests and metrics).
func (x *Outputs) SpeculationCounts() (started, used, dropped int64) {
	return x.specsStarted.Load(), x.specsUsed.Load(), x.specsDropped.Load()
}
