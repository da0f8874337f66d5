package metrics

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mpcfs/mpcfs/store"
)

// TestInstrumentStore: requests are counted by operation and failures by
// cause; a success counts no error (the control).
func TestInstrumentStore(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "b"), 0o755)
	local, err := store.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	st := InstrumentStore(local)
	ctx := context.Background()
	stats, missing := StoreRequests.WithLabelValues("stat"), StoreErrors.WithLabelValues("stat", "not_found")
	reqs0, errs0 := testutil.ToFloat64(stats), testutil.ToFloat64(missing)
	if err := st.Put(ctx, "b", "k", []byte("x")); err != nil {
		t.Fatal(err)
	}
	st.Stat(ctx, "b", "k")
	if got := testutil.ToFloat64(missing) - errs0; got != 0 {
		t.Errorf("a found object counted %v not_found errors", got)
	}
	st.Stat(ctx, "b", "nope")
	if got := testutil.ToFloat64(stats) - reqs0; got != 2 {
		t.Errorf("stat requests: %v, want 2", got)
	}
	if got := testutil.ToFloat64(missing) - errs0; got != 1 {
		t.Errorf("not_found errors: %v, want 1", got)
	}
	if _, ok := st.(interface {
		MakeBucket(context.Context, string) error
	}); !ok {
		t.Errorf("the wrapper hides MakeBucket")
	}
}
