package control

import (
	"io"
	"strings"

	"github.com/mpcfs/mpcfs/store"
)

// The planner works through playlists one at a time (its bookkeeping is
// serial), but it need not wait for the store one request at a time: a
// master names its variants at once, and each variant's playlist and the
// listing of its folder (the segments' sizes and ETags) can all be asked
// for together. prefetch starts those requests; stat and readObject take
// their answers when the serial planning reaches them. On a store a round
// trip away, a 2-variant task then waits for two rounds of reads (the
// master, then every variant) instead of five.

// pending is a read under way (a playlist's bytes, a folder's listing):
// val and err are set before done is closed.
type pending[T any] struct {
	done chan struct{}
	val  T
	err  error
}

// take waits for key's read if prefetch started it (ok false if not),
// and forgets it.
func take[T any](reads map[string]*pending[T], key string) (val T, ok bool, err error) {
	r := reads[key]
	if r == nil {
		return val, false, nil
	}
	<-r.done
	delete(reads, key)
	return r.val, true, r.err
}

// dirOf is the folder of key: "" or ending in "/".
func dirOf(key string) string {
	if i := strings.LastIndex(key, "/"); i >= 0 {
		return key[:i+1]
	}
	return ""
}

// prefetch starts reading each playlist key and listing its folder,
// unless already read, listed or under way; at most Tuning.PlanReadsAtOnce
// requests run at once. Only the planner's goroutine touches the maps;
// each request writes its own pending value and closes done.
func (p *planner) prefetch(keys ...string) {
	if p.readsAtOnce <= 0 {
		return // off: stat and readObject ask as they go
	}
	if p.sem == nil {
		p.sem = make(chan struct{}, p.readsAtOnce)
		p.gets = map[string]*pending[[]byte]{}
		p.lists = map[string]*pending[store.Listing]{}
	}
	for _, key := range keys {
		if dir := dirOf(key); !p.listed[dir] && p.lists[dir] == nil {
			l := &pending[store.Listing]{done: make(chan struct{})}
			p.lists[dir] = l
			p.async(func() { l.val, l.err = p.st.List(p.ctx, p.bucket, dir); close(l.done) })
		}
		if _, done := p.read[key]; !done && p.gets[key] == nil {
			g := &pending[[]byte]{done: make(chan struct{})}
			p.gets[key] = g
			p.async(func() { g.val, g.err = p.get(key); close(g.done) })
		}
	}
}

func (p *planner) async(f func()) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		select {
		case p.sem <- struct{}{}:
			defer func() { <-p.sem }()
		case <-p.ctx.Done(): // f fails at once with the planning's end
		}
		f()
	}()
}

// get reads a playlist whole, at most maxPlaylistSize+1 bytes (more is
// refused by the size its listing or HEAD gives).
func (p *planner) get(key string) ([]byte, error) {
	rc, err := p.st.Open(p.ctx, p.bucket, key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, maxPlaylistSize+1))
}
