package fs_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/fs"
	"github.com/mpcfs/mpcfs/store"
	"github.com/mpcfs/mpcfs/tuning"
)

// pairedStore answers a Stat only once the HasPrefix of the same name's
// folder has been asked (or after a second): if the mount asks the two one
// after the other, the Stat that comes first finds no HasPrefix and says so.
type pairedStore struct {
	store.Store
	mu       sync.Mutex
	asked    map[string]chan struct{} // folder prefix -> closed when HasPrefix was called
	serial   []string                 // Stats that waited in vain
	prefixes int                      // HasPrefix calls
}

func (p *pairedStore) askedChan(prefix string) chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.asked == nil {
		p.asked = map[string]chan struct{}{}
	}
	c, ok := p.asked[prefix]
	if !ok {
		c = make(chan struct{})
		p.asked[prefix] = c
	}
	return c
}

func (p *pairedStore) HasPrefix(ctx context.Context, bucket, prefix string) (bool, error) {
	c := p.askedChan(bucket + "/" + prefix)
	p.mu.Lock()
	p.prefixes++
	select {
	case <-c:
	default:
		close(c)
	}
	p.mu.Unlock()
	return p.Store.HasPrefix(ctx, bucket, prefix)
}

func (p *pairedStore) Stat(ctx context.Context, bucket, key string) (store.ObjectInfo, error) {
	select {
	case <-p.askedChan(bucket + "/" + key + "/"):
	case <-time.After(time.Second):
		p.mu.Lock()
		p.serial = append(p.serial, key)
		p.mu.Unlock()
	}
	return p.Store.Stat(ctx, bucket, key)
}

// TestSourceLookupAsksAtOnce: looking up a name in a bucket folder asks
// the store "is it an object?" and "is it a folder?" at once, so on a
// store far away a folder costs one round trip, not two (cd, ls and the
// first open of a source read through the mount pay it per level). The
// answers stay right: an object, a folder, a missing name.
func TestSourceLookupAsksAtOnce(t *testing.T) {
	st, _ := localStore(t, "media")
	ctx := context.Background()
	for _, k := range []string{"vod/seg_0.ts", "vod/deep/seg_1.ts", "top.ts"} {
		if err := st.Put(ctx, "media", k, []byte("data of "+k)); err != nil {
			t.Fatal(err)
		}
	}
	ps := &pairedStore{Store: st}
	f := newFixture(t, ps, ".mpcfs")

	for _, c := range []struct {
		path string
		dir  bool
	}{
		{"vod", true},
		{"vod/deep", true},
		{"vod/seg_0.ts", false},
		{"top.ts", false},
	} {
		fi, err := os.Stat(f.path("buckets", "media", c.path))
		if err != nil {
			t.Errorf("stat %s: %v", c.path, err)
			continue
		}
		if fi.IsDir() != c.dir {
			t.Errorf("stat %s: folder %v, want %v", c.path, fi.IsDir(), c.dir)
		}
	}
	if _, err := os.Stat(f.path("buckets", "media", "vod", "missing.ts")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("stat of a missing name: %v, want ENOENT", err)
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if len(ps.serial) > 0 {
		t.Errorf("lookups asked the store one question after the other for %q: the folder check must go out with the Stat", ps.serial)
	}
	if ps.prefixes == 0 {
		t.Error("no folder check at all")
	}
}

// TestListingAnswersLookups: `ls -l` of a bucket folder costs its listing
// and no request per entry: readdirplus looks up every name right after
// the listing, and the listing already says what each is. A name the
// listing does not hold (an object put since) still asks the store, so
// nothing new is hidden. With ListingTTL 0 (the negative control) every
// entry is asked of the store again.
func TestListingAnswersLookups(t *testing.T) {
	st, _ := localStore(t, "media")
	ctx := context.Background()
	const objects = 40
	for i := range objects {
		if err := st.Put(ctx, "media", fmt.Sprintf("vod/seg_%02d.ts", i), []byte("data")); err != nil {
			t.Fatal(err)
		}
	}
	for _, sub := range []string{"vod/low/a.ts", "vod/high/a.ts"} {
		if err := st.Put(ctx, "media", sub, []byte("data")); err != nil {
			t.Fatal(err)
		}
	}
	lsl := func(f *fixture) (entries int, reqs []string) {
		t.Helper()
		rl := f.st.(*requestLog)
		if _, err := os.Stat(f.path("buckets", "media", "vod")); err != nil {
			t.Fatal(err)
		}
		rl.Take()
		out, err := exec.Command("ls", "-l", f.path("buckets", "media", "vod")).CombinedOutput()
		if err != nil {
			t.Fatalf("ls -l: %v: %s", err, out)
		}
		return strings.Count(string(out), "\n") - 1, rl.Take() // less the "total" line
	}
	perEntry := func(reqs []string) (n int) {
		for _, r := range reqs {
			if strings.HasPrefix(r, "Stat ") || strings.HasPrefix(r, "HasPrefix ") {
				n++
			}
		}
		return n
	}

	f := newFixture(t, &requestLog{Store: st}, ".mpcfs")
	n, reqs := lsl(f)
	if n != objects+2 {
		t.Fatalf("ls -l listed %d entries, want %d", n, objects+2)
	}
	if perEntry(reqs) != 0 {
		t.Errorf("ls -l asked the store per entry: %q", reqs)
	}
	// An object put after the listing is found all the same.
	if err := st.Put(ctx, "media", "vod/late.ts", []byte("late")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(f.path("buckets", "media", "vod", "late.ts")); err != nil || string(b) != "late" {
		t.Errorf("an object put after the listing: %q, %v", b, err)
	}

	g := newFixtureOpts(t, &requestLog{Store: st}, ".mpcfs", mountOpts{tune: func(tu *tuning.Tuning) { tu.ListingTTL = 0 }})
	if _, reqs := lsl(g); perEntry(reqs) < objects {
		t.Errorf("with ListingTTL 0, ls -l asked the store %d times per entry (%q): the control should ask for each", perEntry(reqs), reqs)
	}
}

// TestManyFoldersListedBare: a listing with more sub-folders than
// Tuning.FolderAttrsMax gives the kernel their names without attributes,
// so a plain listing makes no folder node (each is kept by the kernel
// until it forgets it: ~600 B of the daemon's heap, ~50 MB for a
// catalogue's 100,000 title folders). Files keep their attributes (ls -l
// shows their sizes), and a folder is looked up when a path goes through
// it. The negative control is the same listing with the limit above the
// folder count: every folder is made a node as it is listed.
func TestManyFoldersListedBare(t *testing.T) {
	st, _ := localStore(t, "media")
	ctx := context.Background()
	const folders, files = 30, 5
	for i := range folders {
		if err := st.Put(ctx, "media", fmt.Sprintf("cat/t%02d/a.ts", i), []byte("title")); err != nil {
			t.Fatal(err)
		}
	}
	for i := range files {
		if err := st.Put(ctx, "media", fmt.Sprintf("cat/f%d.ts", i), []byte("12345678")); err != nil {
			t.Fatal(err)
		}
	}
	list := func(f *fixture) (dirs, made int64) {
		t.Helper()
		before := fs.FoldersAnswered()
		entries, err := os.ReadDir(f.path("buckets", "media", "cat"))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.IsDir() {
				dirs++
			}
		}
		return dirs, fs.FoldersAnswered() - before
	}

	f := newFixtureOpts(t, st, ".mpcfs", mountOpts{tune: func(tu *tuning.Tuning) { tu.FolderAttrsMax = 10 }})
	if _, err := os.Stat(f.path("buckets", "media", "cat")); err != nil {
		t.Fatal(err)
	}
	if dirs, made := list(f); dirs != folders || made != 0 {
		t.Errorf("a listing of %d folders (limit 10): %d listed as folders, %d folder nodes made; want %d and 0", folders, dirs, made, folders)
	}
	out, err := exec.Command("ls", "-l", f.path("buckets", "media", "cat")).CombinedOutput()
	if err != nil || strings.Count(string(out), " 8 ") != files || strings.Count(string(out), "\nd") != folders {
		t.Errorf("ls -l: %v\n%s\nwant %d files of 8 bytes and %d folders", err, out, files, folders)
	}
	if b, err := os.ReadFile(f.path("buckets", "media", "cat", "t07", "a.ts")); err != nil || string(b) != "title" {
		t.Errorf("a file in a folder listed bare: %q, %v", b, err)
	}

	g := newFixtureOpts(t, st, ".mpcfs", mountOpts{tune: func(tu *tuning.Tuning) { tu.FolderAttrsMax = folders }})
	if _, err := os.Stat(g.path("buckets", "media", "cat")); err != nil {
		t.Fatal(err)
	}
	if dirs, made := list(g); dirs != folders || made < folders {
		t.Errorf("control, limit %d: %d listed as folders, %d folder nodes made; want %d and %d", folders, dirs, made, folders, folders)
	}
}
