package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/store"
	"github.com/mpcfs/mpcfs/store/miniotest"
)

// backend is one Store under test plus how to create a bucket in it (the
// Store interface has no MakeBucket: buckets are made out of band).
type backend struct {
	st         store.Store
	makeBucket func(t *testing.T, name string)
	local      bool
	// other is a second client of the same store (as another mount
	// would have), for the compare-and-swap races.
	other store.Store
}

func localBackend(t *testing.T) backend {
	dir := t.TempDir()
	st, err := store.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	other, err := store.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	return backend{st: st, local: true, other: other, makeBucket: func(t *testing.T, name string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}}
}

func s3Backend(t *testing.T) backend {
	srv := miniotest.Start(t)
	other, err := store.NewS3(store.S3Config{Endpoint: srv.Endpoint, Region: "us-east-1", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	return backend{st: srv.Store(), other: other, makeBucket: func(t *testing.T, name string) { srv.MakeBucket(t, name) }}
}

func TestLocalConformance(t *testing.T) { conformance(t, localBackend(t)) }
func TestS3Conformance(t *testing.T)    { conformance(t, s3Backend(t)) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/256)
	}
	return b
}

const unicodeKey = "dir with space/ünïcödé 文件 #1.mkv"

// conformance checks the behaviour every Store must share.
func conformance(t *testing.T, b backend) {
	ctx := ctxT(t)
	b.makeBucket(t, "beta")
	b.makeBucket(t, "alpha")
	put := func(bucket, key string, data []byte) {
		t.Helper()
		if err := b.st.Put(ctx, bucket, key, data); err != nil {
			t.Fatalf("Put %s/%s: %v", bucket, key, err)
		}
	}
	for _, k := range []string{"top.txt", "a/x.txt", "a/b/d.txt", "a/b/c.txt", "a/b/e/f.txt", unicodeKey} {
		put("alpha", k, []byte("content of "+k))
	}
	put("alpha", "big.bin", pattern(1000))
	if b.local {
		put(".mpcfs", "tasks/1.json", []byte("{}"))
	}

	t.Run("Buckets", func(t *testing.T) { testBuckets(t, b) })
	t.Run("List", func(t *testing.T) { testList(t, b) })
	t.Run("HasPrefix", func(t *testing.T) { testHasPrefix(t, b) })
	t.Run("Stat", func(t *testing.T) { testStat(t, b) })
	t.Run("Open", func(t *testing.T) { testOpen(t, b) })
	t.Run("Missing", func(t *testing.T) { testMissing(t, b) })
	t.Run("PutDelete", func(t *testing.T) { testPutDelete(t, b) })
	t.Run("Unicode", func(t *testing.T) { testUnicode(t, b) })
	t.Run("OpenMatch", func(t *testing.T) { testOpenMatch(t, b) })
	t.Run("PutMatch", func(t *testing.T) { testPutMatch(t, b) })
	t.Run("PutMatchRace", func(t *testing.T) { testPutMatchRace(t, b) })
	t.Run("Answer", func(t *testing.T) { testAnswer(t, b) })
}

// testAnswer: a body from Open says which version it carries (the ETag
// Stat gives, another after an overwrite) and how many bytes, a range
// past the end cut to the object: what lets an unconditional GET be held
// to a recorded ETag afterwards (control's speculative source GETs).
func testAnswer(t *testing.T, b backend) {
	ctx := ctxT(t)
	if err := b.st.Put(ctx, "beta", "answer", pattern(100)); err != nil {
		t.Fatal(err)
	}
	fi, err := b.st.Stat(ctx, "beta", "answer")
	if err != nil {
		t.Fatal(err)
	}
	answer := func(off, n int64) (string, int64) {
		t.Helper()
		r, err := b.st.Open(ctx, "beta", "answer", off, n)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		etag, length, ok := store.AnswerOf(r)
		if !ok {
			t.Fatalf("Open(%d, %d): the body does not tell its ETag and length", off, n)
		}
		if got, _ := io.ReadAll(r); int64(len(got)) != length {
			t.Errorf("Open(%d, %d): %d bytes read, the answer said %d", off, n, len(got), length)
		}
		return etag, length
	}
	if etag, length := answer(0, 1000); etag != fi.ETag || length != 100 {
		t.Errorf("Open(0, 1000) of 100 bytes: ETag %q, length %d; want %q, 100", etag, length, fi.ETag)
	}
	if _, length := answer(10, 20); length != 20 {
		t.Errorf("Open(10, 20): length %d, want 20", length)
	}
	other := pattern(100)
	other[0] ^= 0xff
	if err := b.st.Put(ctx, "beta", "answer", other); err != nil {
		t.Fatal(err)
	}
	if etag, _ := answer(0, 10); etag == fi.ETag {
		t.Errorf("after a same-size overwrite the body still says ETag %q", etag)
	}
}

// testPutMatch: a conditional Put writes only over the ETag it names (or
// only a new object, for ""), returns the new ETag, and otherwise fails
// with ErrChanged and writes nothing.
func testPutMatch(t *testing.T, b backend) {
	ctx := ctxT(t)
	read := func() string {
		t.Helper()
		r, err := b.st.Open(ctx, "beta", "cas/rec.json", 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		got, _ := io.ReadAll(r)
		return string(got)
	}
	e1, err := b.st.PutMatch(ctx, "beta", "cas/rec.json", []byte("one"), "")
	if err != nil || e1 == "" {
		t.Fatalf("PutMatch of a new object: %q, %v", e1, err)
	}
	if _, err := b.other.PutMatch(ctx, "beta", "cas/rec.json", []byte("again"), ""); !errors.Is(err, store.ErrChanged) {
		t.Errorf("PutMatch \"\" over an existing object: %v, want ErrChanged", err)
	}
	e2, err := b.other.PutMatch(ctx, "beta", "cas/rec.json", []byte("two"), e1)
	if err != nil || e2 == "" || e2 == e1 {
		t.Fatalf("PutMatch over the named ETag: %q (was %q), %v", e2, e1, err)
	}
	if info, err := b.st.Stat(ctx, "beta", "cas/rec.json"); err != nil || info.ETag != e2 {
		t.Errorf("Stat after PutMatch: %+v, %v; want ETag %q", info, err, e2)
	}
	// Same size as the current content: only the ETag tells them apart.
	if _, err := b.st.PutMatch(ctx, "beta", "cas/rec.json", []byte("xxx"), e1); !errors.Is(err, store.ErrChanged) {
		t.Errorf("PutMatch over a stale ETag: %v, want ErrChanged", err)
	}
	if got := read(); got != "two" {
		t.Errorf("content %q after a refused PutMatch, want two", got)
	}
}

// testPutMatchRace: two clients incrementing one counter by
// read-modify-PutMatch, retrying on ErrChanged, lose no increment.
func testPutMatchRace(t *testing.T, b backend) {
	ctx := ctxT(t)
	const key, perClient = "cas/counter", 25
	if _, err := b.st.PutMatch(ctx, "beta", key, []byte("0"), ""); err != nil {
		t.Fatal(err)
	}
	incr := func(st store.Store) error {
		for done := 0; done < perClient; {
			info, err := st.Stat(ctx, "beta", key)
			if err != nil {
				return err
			}
			r, err := st.OpenMatch(ctx, "beta", key, info.ETag, 0, -1)
			if errors.Is(err, store.ErrChanged) {
				continue
			}
			if err != nil {
				return err
			}
			data, _ := io.ReadAll(r)
			r.Close()
			var n int
			fmt.Sscan(string(data), &n)
			_, err = st.PutMatch(ctx, "beta", key, []byte(fmt.Sprint(n+1)), info.ETag)
			if errors.Is(err, store.ErrChanged) {
				continue
			}
			if err != nil {
				return err
			}
			done++
		}
		return nil
	}
	errs := make(chan error, 2)
	go func() { errs <- incr(b.st) }()
	go func() { errs <- incr(b.other) }()
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	r, err := b.st.Open(ctx, "beta", key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(r)
	r.Close()
	if string(data) != fmt.Sprint(2*perClient) {
		t.Errorf("counter %s after %d increments by two clients", data, 2*perClient)
	}
}

// testOpenMatch: a read conditioned on the recorded ETag gets that
// version's bytes, ErrChanged once the object is replaced (even by one of
// the same size), and ErrNotExist once it is deleted.
func testOpenMatch(t *testing.T, b backend) {
	ctx := ctxT(t)
	if err := b.st.Put(ctx, "beta", "cond", pattern(100)); err != nil {
		t.Fatal(err)
	}
	fi, err := b.st.Stat(ctx, "beta", "cond")
	if err != nil {
		t.Fatal(err)
	}
	r, err := b.st.OpenMatch(ctx, "beta", "cond", fi.ETag, 10, 5)
	if err != nil {
		t.Fatalf("OpenMatch with the current ETag: %v", err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if !bytes.Equal(got, pattern(100)[10:15]) {
		t.Errorf("OpenMatch read %v", got)
	}
	other := pattern(100)
	other[0] ^= 0xff
	if err := b.st.Put(ctx, "beta", "cond", other); err != nil {
		t.Fatal(err)
	}
	if r, err := b.st.OpenMatch(ctx, "beta", "cond", fi.ETag, 0, 10); !errors.Is(err, store.ErrChanged) {
		if r != nil {
			r.Close()
		}
		t.Errorf("OpenMatch after a same-size overwrite = %v, want ErrChanged", err)
	}
	if err := b.st.Delete(ctx, "beta", "cond"); err != nil {
		t.Fatal(err)
	}
	if r, err := b.st.OpenMatch(ctx, "beta", "cond", fi.ETag, 0, 10); !errors.Is(err, store.ErrNotExist) {
		if r != nil {
			r.Close()
		}
		t.Errorf("OpenMatch after Delete = %v, want ErrNotExist", err)
	}
}

func testBuckets(t *testing.T, b backend) {
	ctx := ctxT(t)
	got, err := b.st.Buckets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"alpha", "beta"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Buckets = %q, want %q (hidden .mpcfs must not be listed)", got, want)
	}
	for name, want := range map[string]bool{"alpha": true, "beta": true, "gamma": false} {
		if ok, err := b.st.BucketExists(ctx, name); err != nil || ok != want {
			t.Errorf("BucketExists(%s) = %v, %v; want %v", name, ok, err, want)
		}
	}
	if b.local {
		if ok, err := b.st.BucketExists(ctx, ".mpcfs"); err != nil || !ok {
			t.Errorf("BucketExists(.mpcfs) = %v, %v", ok, err)
		}
		l, err := b.st.List(ctx, ".mpcfs", "tasks/")
		if err != nil || len(l.Objects) != 1 || l.Objects[0].Key != "tasks/1.json" {
			t.Errorf("List(.mpcfs, tasks/) = %+v, %v", l, err)
		}
	}
}

func keys(l store.Listing) []string {
	var ks []string
	for _, o := range l.Objects {
		ks = append(ks, o.Key)
	}
	return ks
}

func testList(t *testing.T, b backend) {
	ctx := ctxT(t)
	cases := []struct {
		prefix   string
		objects  []string
		prefixes []string
	}{
		{"", []string{"big.bin", "top.txt"}, []string{"a/", "dir with space/"}},
		{"a/", []string{"a/x.txt"}, []string{"a/b/"}},
		{"a/b/", []string{"a/b/c.txt", "a/b/d.txt"}, []string{"a/b/e/"}},
		{"a/b/e/", []string{"a/b/e/f.txt"}, nil},
		{"nothing/", nil, nil},
		// A prefix ending inside a name, as S3 has it.
		{"a/b/c", []string{"a/b/c.txt"}, nil},
		{"a/b/e", nil, []string{"a/b/e/"}},
		{"t", []string{"top.txt"}, nil},
		{"a/x", []string{"a/x.txt"}, nil},
		{"a/z", nil, nil},
	}
	for _, c := range cases {
		l, err := b.st.List(ctx, "alpha", c.prefix)
		if err != nil {
			t.Errorf("List(%q): %v", c.prefix, err)
			continue
		}
		if !slices.Equal(keys(l), c.objects) || !slices.Equal(l.Prefixes, c.prefixes) {
			t.Errorf("List(%q) = objects %q prefixes %q; want %q %q", c.prefix, keys(l), l.Prefixes, c.objects, c.prefixes)
		}
	}
	l, _ := b.st.List(ctx, "alpha", "a/b/")
	for _, o := range l.Objects {
		if want := int64(len("content of " + o.Key)); o.Size != want || o.ETag == "" || o.ModTime.IsZero() {
			t.Errorf("listed %+v: want size %d, an ETag and a ModTime", o, want)
		}
	}
}

func testHasPrefix(t *testing.T, b backend) {
	ctx := ctxT(t)
	for prefix, want := range map[string]bool{
		"a/": true, "a/b/": true, "a/b/e/": true, "dir with space/": true,
		"nothing/": false, "top.txt/": false, "a/x.txt/": false, "a/b/e/f.txt/": false,
	} {
		if ok, err := b.st.HasPrefix(ctx, "alpha", prefix); err != nil || ok != want {
			t.Errorf("HasPrefix(alpha, %q) = %v, %v; want %v", prefix, ok, err, want)
		}
	}
	if _, err := b.st.HasPrefix(ctx, "gamma", "a/"); !errors.Is(err, store.ErrNotExist) {
		t.Errorf("HasPrefix in a missing bucket: %v, want ErrNotExist", err)
	}
}

func testStat(t *testing.T, b backend) {
	ctx := ctxT(t)
	fi, err := b.st.Stat(ctx, "alpha", "big.bin")
	if err != nil || fi.Size != 1000 || fi.Key != "big.bin" || fi.ETag == "" {
		t.Fatalf("Stat(big.bin) = %+v, %v", fi, err)
	}
	l, _ := b.st.List(ctx, "alpha", "")
	if i := slices.IndexFunc(l.Objects, func(o store.ObjectInfo) bool { return o.Key == "big.bin" }); i < 0 || l.Objects[i].ETag != fi.ETag {
		t.Errorf("List and Stat disagree on the ETag: %+v vs %+v", l.Objects, fi)
	}
	prev := fi
	for _, data := range [][]byte{[]byte("short"), []byte("SHORT"), pattern(3000)} {
		if err := b.st.Put(ctx, "alpha", "changing", data); err != nil {
			t.Fatal(err)
		}
		fi, err := b.st.Stat(ctx, "alpha", "changing")
		if err != nil || fi.Size != int64(len(data)) {
			t.Fatalf("Stat after Put of %d bytes = %+v, %v", len(data), fi, err)
		}
		if fi.ETag == prev.ETag {
			t.Errorf("ETag %q did not change after overwrite", fi.ETag)
		}
		prev = fi
	}
}

func testOpen(t *testing.T, b backend) {
	ctx := ctxT(t)
	data := pattern(1000)
	cases := []struct{ off, length, wantFrom, wantTo int64 }{
		{0, 10, 0, 10},
		{500, 100, 500, 600},
		{990, 10, 990, 1000},
		{990, -1, 990, 1000},
		{0, -1, 0, 1000},
		{0, 1, 0, 1},
		{1, -1, 1, 1000},
		{5, 0, 5, 5},
		{0, 0, 0, 0},
		{995, 100, 995, 1000}, // clipped at the end
	}
	for _, c := range cases {
		r, err := b.st.Open(ctx, "alpha", "big.bin", c.off, c.length)
		if err != nil {
			t.Errorf("Open(%d, %d): %v", c.off, c.length, err)
			continue
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, data[c.wantFrom:c.wantTo]) {
			t.Errorf("Open(%d, %d) read %d bytes (%v), want bytes [%d,%d)", c.off, c.length, len(got), err, c.wantFrom, c.wantTo)
		}
	}
	if r, err := b.st.Open(ctx, "alpha", "big.bin", 2000, 10); err == nil {
		r.Close()
		t.Error("Open beyond the end succeeded")
	}
}

func testMissing(t *testing.T, b backend) {
	ctx := ctxT(t)
	for _, c := range []struct{ bucket, key string }{{"alpha", "nope"}, {"alpha", "a/nope/x"}, {"gamma", "x"}} {
		if _, err := b.st.Stat(ctx, c.bucket, c.key); !errors.Is(err, store.ErrNotExist) {
			t.Errorf("Stat(%s/%s) = %v, want ErrNotExist", c.bucket, c.key, err)
		}
		if r, err := b.st.Open(ctx, c.bucket, c.key, 0, 10); !errors.Is(err, store.ErrNotExist) {
			if r != nil {
				r.Close()
			}
			t.Errorf("Open(%s/%s) = %v, want ErrNotExist", c.bucket, c.key, err)
		}
	}
	if _, err := b.st.Stat(ctx, "alpha", "a"); !errors.Is(err, store.ErrNotExist) {
		t.Errorf("Stat of a prefix = %v, want ErrNotExist", err)
	}
	if _, err := b.st.List(ctx, "gamma", ""); !errors.Is(err, store.ErrNotExist) {
		t.Errorf("List(gamma) = %v, want ErrNotExist", err)
	}
	if _, err := b.st.List(ctx, "gamma", "a/"); !errors.Is(err, store.ErrNotExist) {
		t.Errorf("List(gamma, a/) = %v, want ErrNotExist", err)
	}
}

func testPutDelete(t *testing.T, b backend) {
	ctx := ctxT(t)
	if err := b.st.Put(ctx, "beta", "x/y/z.json", []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	r, err := b.st.Open(ctx, "beta", "x/y/z.json", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if string(got) != `{"a":1}` {
		t.Errorf("read back %q", got)
	}
	if err := b.st.Put(ctx, "beta", "empty", nil); err != nil {
		t.Fatal(err)
	}
	if fi, err := b.st.Stat(ctx, "beta", "empty"); err != nil || fi.Size != 0 {
		t.Errorf("Stat(empty) = %+v, %v", fi, err)
	}
	for _, k := range []string{"x/y/z.json", "empty"} {
		if err := b.st.Delete(ctx, "beta", k); err != nil {
			t.Fatal(err)
		}
		if _, err := b.st.Stat(ctx, "beta", k); !errors.Is(err, store.ErrNotExist) {
			t.Errorf("Stat after Delete(%s) = %v", k, err)
		}
	}
	if err := b.st.Delete(ctx, "beta", "never-existed"); err != nil {
		t.Errorf("Delete of a missing object: %v", err)
	}
}

func testUnicode(t *testing.T, b backend) {
	ctx := ctxT(t)
	fi, err := b.st.Stat(ctx, "alpha", unicodeKey)
	if err != nil || fi.Key != unicodeKey || fi.Size != int64(len("content of "+unicodeKey)) {
		t.Fatalf("Stat(%q) = %+v, %v", unicodeKey, fi, err)
	}
	l, err := b.st.List(ctx, "alpha", "dir with space/")
	if err != nil || !slices.Equal(keys(l), []string{unicodeKey}) {
		t.Errorf("List(dir with space/) = %+v, %v", l, err)
	}
	r, err := b.st.Open(ctx, "alpha", unicodeKey, 11, 3)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if want := unicodeKey[:3]; string(got) != want {
		t.Errorf("Open range = %q, want %q", got, want)
	}
}
