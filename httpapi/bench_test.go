package httpapi

import (
	"fmt"
	"testing"
)

// BenchmarkCreate compares a create through the API (signing, TCP,
// verification) with the Manager's own Submit on a local store: the
// difference is what the HTTP side costs.
func BenchmarkCreate(b *testing.B) {
	e := newEnv(b, Config{})
	b.Run("manager", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := e.mgr.Submit([]byte(createBody(fmt.Sprintf("m%d", i)))); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("http", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if rp := e.call("POST", "", createBody(fmt.Sprintf("h%d", i))); rp.code != 202 {
				b.Fatal(rp.code)
			}
		}
	})
}
