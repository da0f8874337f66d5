package httpapi

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Vectors signed by Huawei Cloud's Node.js SDK core 3.1.211
// (auth/AKSKSigner.js, ak "a", sk "b", fixed X-Sdk-Date): our verifier must
// rebuild the very canonical request it signed.
var sdkVectors = []struct {
	name, method, url, body, sig string
}{
	{"query", "GET", "http://127.0.0.1:18413/v1/p/encryptions?task_id=1%2C2&size=5", "",
		"2922ad8e58897b4ef727201f4e46f5ca1aa65d3797b55829604ef25a29b49425"},
	{"create", "POST", "http://127.0.0.1:18413/v1/p/encryptions", `{"a":"é"}`,
		"1e5fde798d10df8e947849357365b2f0e663e77cb72bfa49763cabae62b089f6"},
}

func sdkRequest(t *testing.T, method, url, body, sig string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-Project-Id", "p")
	r.Header.Set("X-Sdk-Date", "20261201T141949Z")
	r.Header.Set("Authorization", "SDK-HMAC-SHA256 Access=a, SignedHeaders=content-type;host;x-project-id;x-sdk-date, Signature="+sig)
	return r
}

func TestVerifySDKVectors(t *testing.T) {
	s := New(Config{Credentials: Credentials{"a": {AccessKey: "a", SecretKey: "b", ProjectID: "p"}}})
	at := time.Date(2026, 12, 1, 14, 20, 0, 0, time.UTC)
	for _, v := range sdkVectors {
		t.Run(v.name, func(t *testing.T) {
			if _, err := s.verify(sdkRequest(t, v.method, v.url, v.body, v.sig), []byte(v.body), at); err != nil {
				t.Fatalf("the SDK's own signature is refused: %v", err)
			}
			// Negative controls: one changed thing each must fail.
			bad := map[string]*http.Request{
				"signature": sdkRequest(t, v.method, v.url, v.body, strings.Replace(v.sig, v.sig[:1], "0", 1)),
				"method":    sdkRequest(t, "DELETE", v.url, v.body, v.sig),
				"url":       sdkRequest(t, v.method, strings.Replace(v.url, "/p/", "/q/", 1), v.body, v.sig),
			}
			for what, r := range bad {
				if _, err := s.verify(r, []byte(v.body), at); err == nil || err.reason != "signature" {
					t.Errorf("changed %s: verify = %v, want a signature failure", what, err)
				}
			}
			if _, err := s.verify(sdkRequest(t, v.method, v.url, v.body, v.sig), []byte(v.body+" "), at); err == nil {
				t.Errorf("changed body accepted")
			}
			if _, err := s.verify(sdkRequest(t, v.method, v.url, v.body, v.sig), []byte(v.body), at.Add(16*time.Minute)); err == nil || err.reason != "date" {
				t.Errorf("16 minutes late: verify = %v, want a date failure", err)
			}
			if _, err := s.verify(sdkRequest(t, v.method, v.url, v.body, v.sig), []byte(v.body), at.Add(-16*time.Minute)); err == nil || err.reason != "date" {
				t.Errorf("16 minutes early: verify = %v, want a date failure", err)
			}
		})
	}
}

func TestVerifyRefusals(t *testing.T) {
	s := New(Config{Credentials: Credentials{"a": {AccessKey: "a", SecretKey: "b", ProjectID: "p"}}})
	at := time.Date(2026, 12, 1, 14, 20, 0, 0, time.UTC)
	v := sdkVectors[0]
	for _, c := range []struct {
		name   string
		edit   func(r *http.Request)
		reason string
	}{
		{"no authorization", func(r *http.Request) { r.Header.Del("Authorization") }, "missing"},
		{"other scheme", func(r *http.Request) { r.Header.Set("Authorization", "Bearer x") }, "malformed"},
		{"unknown access key", func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "Access=a", "Access=z", 1))
		}, "signature"},
		{"host not signed", func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "host;", "", 1))
		}, "malformed"},
		{"no date", func(r *http.Request) { r.Header.Del("X-Sdk-Date") }, "date"},
		{"bad date", func(r *http.Request) { r.Header.Set("X-Sdk-Date", "yesterday") }, "date"},
		{"unsigned payload with a body", func(r *http.Request) { r.Header.Set("X-Sdk-Content-Sha256", "UNSIGNED-PAYLOAD") }, "payload"},
		{"header changed", func(r *http.Request) { r.Header.Set("X-Project-Id", "q") }, "signature"},
	} {
		r := sdkRequest(t, v.method, v.url, v.body, v.sig)
		c.edit(r)
		body := []byte(v.body)
		if c.name == "unsigned payload with a body" {
			body = []byte("{}")
		}
		if _, err := s.verify(r, body, at); err == nil || err.reason != c.reason {
			t.Errorf("%s: verify = %v, want reason %s", c.name, err, c.reason)
		}
	}
}

func writeCreds(t *testing.T, text string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "creds")
	if err := os.WriteFile(p, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadCredentials(t *testing.T) {
	good := "# API users\n\nAK1:sk:with:colons:proj1\n  AK2:s2:proj2  \n"
	c, err := LoadCredentials(writeCreds(t, good, 0o600))
	if err != nil {
		t.Fatal(err)
	}
	if len(c) != 2 || c["AK1"].SecretKey != "sk:with:colons" || c["AK1"].ProjectID != "proj1" || c["AK2"].ProjectID != "proj2" {
		t.Fatalf("credentials = %d entries, AK1 project %q", len(c), c["AK1"].ProjectID)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		_, err := LoadCredentials(writeCreds(t, good, mode))
		if err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %04o: err = %v, want a refusal", mode, err)
		}
	}
	for name, text := range map[string]string{
		"two fields":   "AK1:topsecret\n",
		"empty secret": "AK1::proj\n",
		"duplicate":    "AK1:topsecret:p\nAK1:topsecret2:p\n",
		"bad project":  "AK1:topsecret:p/x\n",
		"nothing":      "# only a comment\n",
	} {
		_, err := LoadCredentials(writeCreds(t, text, 0o600))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), "topsecret") {
			t.Errorf("%s: error shows the secret: %v", name, err)
		}
	}
}

func TestFailLimiter(t *testing.T) {
	l := newFailLimiter(3, time.Second)
	now := time.Unix(1e9, 0)
	for i := 0; i < 3; i++ {
		if b, _ := l.blocked("1.2.3.4", now); b {
			t.Fatalf("blocked after %d failures", i)
		}
		l.fail("1.2.3.4", now)
	}
	if b, wait := l.blocked("1.2.3.4", now); !b || wait <= 0 {
		t.Fatalf("not blocked after the burst")
	}
	if b, _ := l.blocked("5.6.7.8", now); b {
		t.Fatalf("another address is blocked")
	}
	if b, _ := l.blocked("1.2.3.4", now.Add(1100*time.Millisecond)); b {
		t.Fatalf("still blocked after a refill")
	}
	for i := 0; i < maxTracked+10; i++ {
		l.fail(strings.Repeat("x", i%7)+string(rune('a'+i%26))+time.Duration(i).String(), now)
	}
	if len(l.buckets) > maxTracked {
		t.Fatalf("limiter tracks %d addresses, bound %d", len(l.buckets), maxTracked)
	}
}

func TestListenAddr(t *testing.T) {
	for in, want := range map[string]string{":8080": "127.0.0.1:8080", "8080": "127.0.0.1:8080",
		"0.0.0.0:80": "0.0.0.0:80", "[::1]:9": "[::1]:9", "localhost:1": "localhost:1"} {
		if got, err := ListenAddr(in); err != nil || got != want {
			t.Errorf("ListenAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// Sign, given what the SDK signed, makes the SDK's signature.
func TestSignMatchesSDK(t *testing.T) {
	date := time.Date(2026, 12, 1, 14, 19, 49, 0, time.UTC)
	for _, v := range sdkVectors {
		r, _ := http.NewRequest(v.method, v.url, strings.NewReader(v.body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("X-Project-Id", "p")
		r.Header.Set("User-Agent", "not signed")
		Sign(r, []byte(v.body), Credential{AccessKey: "a", SecretKey: "b"}, date)
		if got := r.Header.Get("Authorization"); !strings.HasSuffix(got, "Signature="+v.sig) {
			t.Errorf("%s: Authorization %q, want the SDK's signature %s", v.name, got, v.sig)
		}
	}
}
