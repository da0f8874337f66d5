package store_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/store"
	"github.com/mpcfs/mpcfs/store/miniotest"
)

// TestS3Unavailable: a stopped server gives ErrUnavailable quickly (no
// hang), and the same client works again once it is back.
func TestS3Unavailable(t *testing.T) {
	srv := miniotest.Start(t)
	srv.MakeBucket(t, "media")
	srv.PutFile(t, "media", "v.mkv", []byte("0123456789"))
	st := srv.Store()

	srv.Stop()
	check := func(name string, op func(ctx context.Context) error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		start := time.Now()
		err := op(ctx)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s took %v with the server down", name, d)
		}
		t.Logf("%s with the server down: %v after %v", name, err, time.Since(start).Round(time.Millisecond))
		if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrNotExist) {
			t.Errorf("%s with the server down = %v, want ErrUnavailable", name, err)
		}
		if err != nil && strings.Contains(err.Error(), srv.SecretKey) {
			t.Errorf("%s error leaks the secret: %v", name, err)
		}
	}
	check("Stat", func(ctx context.Context) error { _, err := st.Stat(ctx, "media", "v.mkv"); return err })
	check("Open", func(ctx context.Context) error {
		r, err := st.Open(ctx, "media", "v.mkv", 2, 3)
		if r != nil {
			r.Close()
		}
		return err
	})
	check("List", func(ctx context.Context) error { _, err := st.List(ctx, "media", ""); return err })
	check("Buckets", func(ctx context.Context) error { _, err := st.Buckets(ctx); return err })

	srv.Restart(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if fi, err := st.Stat(ctx, "media", "v.mkv"); err != nil || fi.Size != 10 {
		t.Fatalf("Stat after Restart = %+v, %v", fi, err)
	}
	r, err := st.Open(ctx, "media", "v.mkv", 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, _ := io.ReadAll(r); string(got) != "234" {
		t.Errorf("read after Restart = %q", got)
	}
}

func TestS3Config(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AK")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "SK")
	t.Setenv("AWS_REGION", "cn-north-4")
	t.Setenv("AWS_CA_BUNDLE", "")
	// Credentials stay in the environment (read by the chain at request
	// time), never copied into the config.
	cfg := store.S3ConfigFromEnv("https://obs.example.com")
	if cfg != (store.S3Config{Endpoint: "https://obs.example.com", Region: "cn-north-4"}) {
		t.Errorf("S3ConfigFromEnv = %+v", cfg)
	}
	for _, ep := range []string{"127.0.0.1:9000", "ftp://h", "http://", "http://user:hunter2@h:9000"} {
		_, err := store.NewS3(store.S3Config{Endpoint: ep})
		if err == nil {
			t.Errorf("NewS3(%q) accepted", ep)
		} else if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("NewS3 error leaks a password: %v", err)
		}
	}
	if _, err := store.NewS3(cfg); err != nil {
		t.Errorf("NewS3(%+v): %v", cfg.Endpoint, err)
	}
}
