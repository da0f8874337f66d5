package fs_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/mpcfs/mpcfs/control"
	"github.com/mpcfs/mpcfs/internal/testutil"
	"github.com/mpcfs/mpcfs/store"
)

// requestLog is a store that records each request made through it
// ("Stat", "GET", "List", "HasPrefix", "Buckets", "BucketExists" with
// bucket/key).
type requestLog struct {
	store.Store
	testutil.Requests
}

func (l *requestLog) add(op, bucket, key string) { l.Add(op + " " + bucket + "/" + key) }

func (l *requestLog) Buckets(ctx context.Context) ([]string, error) {
	l.add("Buckets", "", "")
	return l.Store.Buckets(ctx)
}

func (l *requestLog) BucketExists(ctx context.Context, bucket string) (bool, error) {
	l.add("BucketExists", bucket, "")
	return l.Store.BucketExists(ctx, bucket)
}

func (l *requestLog) List(ctx context.Context, bucket, prefix string) (store.Listing, error) {
	l.add("List", bucket, prefix)
	return l.Store.List(ctx, bucket, prefix)
}

func (l *requestLog) HasPrefix(ctx context.Context, bucket, prefix string) (bool, error) {
	l.add("HasPrefix", bucket, prefix)
	return l.Store.HasPrefix(ctx, bucket, prefix)
}

func (l *requestLog) Stat(ctx context.Context, bucket, key string) (store.ObjectInfo, error) {
	l.add("Stat", bucket, key)
	return l.Store.Stat(ctx, bucket, key)
}

func (l *requestLog) Open(ctx context.Context, bucket, key string, off, n int64) (io.ReadCloser, error) {
	l.add("GET", bucket, key)
	return l.Store.Open(ctx, bucket, key, off, n)
}

func (l *requestLog) OpenMatch(ctx context.Context, bucket, key, etag string, off, n int64) (io.ReadCloser, error) {
	l.add("GET", bucket, key)
	return l.Store.OpenMatch(ctx, bucket, key, etag, off, n)
}

// TestFirstByteStoreRequests: what the store is asked between open(2) of
// a segment output and its first bytes, through the FUSE mount. On the
// mount that ran the task: the segment's source GET only (lookups and
// getattr answer from the output index, the plan is kept). On a fresh
// mount: also the task's record and plan (two GETs; no HEAD). Never a
// HEAD, listing or bucket check, and no source fetched twice (warm-ahead
// may GET the next segments' sources, once each).
func TestFirstByteStoreRequests(t *testing.T) {
	srcDir, l := ladder(t)
	st, _ := localStore(t, "media", "public")
	upload(t, st, "media", "vod/", srcDir)
	rl := &requestLog{Store: st}
	f := newFixture(t, rl, ".mpcfs")
	s := newSecret(t)
	id := f.create("cbc.json", request("AES-128-CBC", s, nil, "enc/cbc"))
	if v := f.wait(id); v.Status != control.Succeeded {
		t.Fatalf("task %s: %s: %s", id, v.Status, v.Description)
	}
	srcPl, err := os.ReadFile(filepath.Join(srcDir, l.Variants[0]))
	if err != nil {
		t.Fatal(err)
	}
	segs := segmentsOf(srcPl)
	rel := filepath.Join("buckets", "public", "enc", "cbc", filepath.Dir(l.Variants[0]))

	firstBytes := func(mnt *fixture, seg string) []string {
		t.Helper()
		rl.Take()
		fd, err := os.Open(mnt.path(rel, seg))
		if err != nil {
			t.Fatal(err)
		}
		defer fd.Close()
		if _, err := io.ReadFull(fd, make([]byte, 16)); err != nil {
			t.Fatal(err)
		}
		return rl.Take()
	}
	check := func(what string, reqs []string, taskStoreGETs int) {
		t.Helper()
		sort.Strings(reqs)
		sys, seen := 0, map[string]bool{}
		for _, r := range reqs {
			switch {
			case !strings.HasPrefix(r, "GET "):
				t.Errorf("%s: %q asked of the store, want GETs only (all: %q)", what, r, reqs)
			case strings.HasPrefix(r, "GET .mpcfs/"):
				sys++
			case seen[r]:
				t.Errorf("%s: %q twice (all: %q)", what, r, reqs)
			}
			seen[r] = true
		}
		if sys != taskStoreGETs {
			t.Errorf("%s: %d task-store GETs, want %d (all: %q)", what, sys, taskStoreGETs, reqs)
		}
		if !seen["GET media/vod/"+filepath.ToSlash(filepath.Join(filepath.Dir(l.Variants[0]), segs[0]))] {
			t.Errorf("%s: the segment's source was not read (all: %q)", what, reqs)
		}
	}
	check("first open on the mount that ran the task", firstBytes(f, segs[0]), 0)

	g := newFixtureOpts(t, rl, ".mpcfs", mountOpts{masterKey: f.masterKey})
	check("first open on a fresh mount", firstBytes(g, segs[0]), 2)
}
