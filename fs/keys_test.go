package fs_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mpcfs/mpcfs/control"
	"github.com/mpcfs/mpcfs/store"
)

// keyForms is a key in every encoding a request accepts (raw, standard and
// URL base64, padded or not) and hex either case.
func keyForms(key []byte) [][]byte {
	forms := [][]byte{key, []byte(hex.EncodeToString(key)), []byte(strings.ToUpper(hex.EncodeToString(key)))}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		forms = append(forms, []byte(enc.EncodeToString(key)))
	}
	return forms
}

// leakChecker greps data for any form of any key.
type leakChecker struct {
	t     *testing.T
	keys  map[string][][]byte // name -> forms
	files int
}

func (c *leakChecker) check(where string, data []byte) {
	c.files++
	for name, forms := range c.keys {
		for _, form := range forms {
			if bytes.Contains(data, form) {
				c.t.Errorf("%s holds key %s as %q", where, name, form)
			}
		}
	}
}

// walk checks every file under a folder of the mount.
func (c *leakChecker) walk(root string) {
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		c.check(p, data)
		return nil
	})
	if err != nil {
		c.t.Fatalf("walking %s: %v", root, err)
	}
}

// storeObjects checks every object of every bucket, the system bucket too.
func (c *leakChecker) storeObjects(st store.Store, buckets ...string) {
	ctx := context.Background()
	var walk func(bucket, prefix string)
	walk = func(bucket, prefix string) {
		l, err := st.List(ctx, bucket, prefix)
		if err != nil {
			c.t.Fatalf("listing %s/%s: %v", bucket, prefix, err)
		}
		for _, o := range l.Objects {
			rc, err := st.Open(ctx, bucket, o.Key, 0, -1)
			if err != nil {
				c.t.Fatal(err)
			}
			data, _ := io.ReadAll(rc)
			rc.Close()
			c.check("object "+bucket+"/"+o.Key, data)
		}
		for _, p := range l.Prefixes {
			walk(bucket, p)
		}
	}
	for _, b := range buckets {
		walk(b, "")
	}
}

// TestKeyNeverLeaks creates tasks with keys in each accepted encoding
// (16 raw characters, standard and URL base64), reads every output, then
// greps the whole mount (control/ and buckets/), the log and every object
// of the store, the task store included, for every form of every key and
// of the master key. A bad request's error never echoes the key either.
func TestKeyNeverLeaks(t *testing.T) {
	srv, _ := minioLadder(t)
	f := newFixture(t, srv.Store(), "mpcfs-system")
	c := &leakChecker{t: t, keys: map[string][][]byte{}}
	rawKey := make([]byte, 16)
	for i := range rawKey { // 16 printable characters: used as raw bytes
		rawKey[i] = 'A' + byte(i*7%26)
	}
	b64Key, urlKey := make([]byte, 16), make([]byte, 16)
	rand.Read(b64Key)
	rand.Read(urlKey)
	urlKey[0] = 0xfb // '+' and '/' in standard base64: '-' and '_' in URL's
	cases := []struct {
		name, alg, key string
		key16          []byte
		iv             string
	}{
		{"raw-cbc", "AES-128-CBC", string(rawKey), rawKey, ""},
		{"std-ctr-iv", "AES-128-CTR", base64.StdEncoding.EncodeToString(b64Key), b64Key, base64.StdEncoding.EncodeToString([]byte("ivivivivivivivi1"))},
		{"url-sm4", "SM4CBC", base64.RawURLEncoding.EncodeToString(urlKey), urlKey, ""},
	}
	for _, k := range cases {
		c.keys[k.name] = keyForms(k.key16)
		req := validRequest()
		enc := hlsEnc(req)
		enc["key"], enc["algorithm"] = k.key, k.alg
		if k.iv != "" {
			enc["iv"] = k.iv
		}
		req["output"].(map[string]any)["object"] = "leak/" + k.name
		id := f.create(k.name+".json", req)
		if v := f.wait(id); v.Status != control.Succeeded {
			t.Fatalf("%s: %s %s", k.name, v.Status, v.Description)
		}
		// A bad request holding the key: the error names the field only.
		enc["algorithm"] = "AES-256-XTS"
		body, _ := json.Marshal(req)
		c.check("response to a bad request", f.submit(k.name+"-bad.json", body))
	}
	secret := "0123456789abcdefX" // 17 characters: not a valid key
	c.keys["invalid"] = [][]byte{[]byte(secret)}
	req := validRequest()
	hlsEnc(req)["key"] = secret
	body, _ := json.Marshal(req)
	c.check("response to an invalid key", f.submit("invalid-key.json", body))

	master, err := os.ReadFile(f.masterKey) // the master key must not leak either
	if err != nil || len(master) != 32 {
		t.Fatalf("master key file: %d bytes, %v", len(master), err)
	}
	c.keys["master"] = keyForms(master)
	c.walk(f.path("control"))
	c.walk(f.path("buckets", "public"))
	logData, _ := os.ReadFile(f.logFile)
	c.check("the log", logData)
	c.storeObjects(srv.Store(), "mpcfs-system", "public", "media")
	if c.files < 20 {
		t.Fatalf("only %d files checked: the check cannot fail", c.files)
	}
}
