package main

import (
	"net"
	"net/http"
	"strings"
	"sync"
)

// keyServer serves the content keys of the bench's outputs on 127.0.0.1,
// so a player (ffmpeg) reading an encrypted output can fetch its key the
// way it would from a real key server. Keys never appear in argv or logs.
type keyServer struct {
	mu   sync.Mutex
	keys map[string][]byte
	addr string
	srv  *http.Server
}

func (b *bench) startKeyServer() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	k := &keyServer{keys: map[string][]byte{}, addr: l.Addr().String()}
	k.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.mu.Lock()
		key, ok := k.keys[strings.TrimPrefix(r.URL.Path, "/key/")]
		k.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(key)
	})}
	go k.srv.Serve(l)
	b.keys = k
	b.atExit(func() { k.srv.Close() })
	return nil
}

// add registers a key and returns its URL.
func (k *keyServer) add(name string, key []byte) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys[name] = key
	return "http://" + k.addr + "/key/" + name, nil
}
