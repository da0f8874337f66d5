package httpapi

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// Credential is one API user: the access key names it, the secret key
// signs its requests, and it may act on one project only.
type Credential struct {
	AccessKey string
	SecretKey string
	ProjectID string
}

// Credentials are the API users, by access key.
type Credentials map[string]Credential

// LoadCredentials reads a credentials file: one ACCESS_KEY:SECRET_KEY:PROJECT_ID
// a line, blank lines and lines starting with # ignored. The file must not
// be readable or writable by group or others (0600 or stricter): it holds
// secret keys. Errors name the line, never a secret.
func LoadCredentials(path string) (Credentials, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("api credentials: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("api credentials: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("api credentials %s: not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("api credentials %s: mode %04o lets group or others read or write secret keys; chmod 600 it", path, perm)
	}
	return parseCredentials(f, path)
}

func parseCredentials(f *os.File, path string) (Credentials, error) {
	creds := Credentials{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// The secret key may itself hold ':'; access key and project id
		// cannot.
		first, last := strings.Index(line, ":"), strings.LastIndex(line, ":")
		if first < 0 || first == last {
			return nil, fmt.Errorf("api credentials %s line %d: want ACCESS_KEY:SECRET_KEY:PROJECT_ID", path, n)
		}
		c := Credential{AccessKey: line[:first], SecretKey: line[first+1 : last], ProjectID: line[last+1:]}
		switch {
		case c.AccessKey == "" || c.SecretKey == "" || c.ProjectID == "":
			return nil, fmt.Errorf("api credentials %s line %d: access key, secret key and project id must all be non-empty", path, n)
		case !token(c.AccessKey) || !token(c.ProjectID):
			return nil, fmt.Errorf("api credentials %s line %d: access key and project id may hold only letters, digits, '-' and '_'", path, n)
		}
		if _, dup := creds[c.AccessKey]; dup {
			return nil, fmt.Errorf("api credentials %s line %d: access key %s is listed twice", path, n, c.AccessKey)
		}
		creds[c.AccessKey] = c
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("api credentials %s: %w", path, err)
	}
	if len(creds) == 0 {
		return nil, fmt.Errorf("api credentials %s: no credential in it", path)
	}
	return creds, nil
}

func token(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return s != ""
}

// The signing scheme of Huawei Cloud's SDKs (AK/SK, "SDK-HMAC-SHA256"),
// as the Node.js SDK core's auth/AKSKSigner.js builds it:
//
//	canonical request = METHOD \n URI \n QUERY \n HEADERS \n SIGNED \n PAYLOAD
//	URI      each path segment escaped (unreserved kept), ending in "/"
//	QUERY    key=value pairs escaped, sorted by key (values of one key sorted)
//	HEADERS  "name:value\n" for each signed header, names lower case, sorted
//	         (so an empty line follows them)
//	SIGNED   the signed header names, lower case, ";"-joined
//	PAYLOAD  hex SHA-256 of the body (or the X-Sdk-Content-Sha256 header)
//	string to sign = "SDK-HMAC-SHA256" \n X-Sdk-Date \n hex SHA-256(canonical request)
//	signature = hex HMAC-SHA256(secret key, string to sign)
const (
	signAlgorithm = "SDK-HMAC-SHA256"
	sdkDateFormat = "20060102T150405Z"
	// maxClockSkew is how far X-Sdk-Date may be from now, either way: a
	// signed request can be replayed within it, not after.
	maxClockSkew   = 15 * time.Minute
	emptyBodySHA   = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	unsignedBody   = "UNSIGNED-PAYLOAD"
	headerSdkDate  = "X-Sdk-Date"
	headerBodyHash = "X-Sdk-Content-Sha256"
)

// authError is why a request was not authenticated. msg goes to the
// client: it says what is wrong without echoing what a correct value would
// be.
type authError struct{ reason, msg string }

func (e *authError) Error() string { return e.msg }

func authFail(reason, format string, args ...any) *authError {
	return &authError{reason: reason, msg: fmt.Sprintf(format, args...)}
}

// authorization is the parsed Authorization header.
type authorization struct {
	access    string
	signed    []string // lower case, as listed
	signature string
}

func parseAuthorization(h string) (*authorization, *authError) {
	if h == "" {
		return nil, authFail("missing", "no Authorization header: requests must be signed with AK/SK (%s)", signAlgorithm)
	}
	alg, rest, ok := strings.Cut(h, " ")
	if !ok || alg != signAlgorithm {
		return nil, authFail("malformed", "Authorization must use %s", signAlgorithm)
	}
	a := &authorization{}
	for _, f := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(f), "=")
		if !ok {
			return nil, authFail("malformed", "Authorization: malformed field")
		}
		switch k {
		case "Access":
			a.access = v
		case "SignedHeaders":
			a.signed = strings.Split(v, ";")
		case "Signature":
			a.signature = v
		default:
			return nil, authFail("malformed", "Authorization: unknown field %q", k)
		}
	}
	if a.access == "" || len(a.signed) == 0 || a.signature == "" {
		return nil, authFail("malformed", "Authorization needs Access, SignedHeaders and Signature")
	}
	return a, nil
}

// verify checks r's signature against the credentials and the body read.
// It returns the credential on success.
func (s *Server) verify(r *http.Request, body []byte, now time.Time) (*Credential, *authError) {
	a, aerr := parseAuthorization(r.Header.Get("Authorization"))
	if aerr != nil {
		return nil, aerr
	}
	dateStr := r.Header.Get(headerSdkDate)
	if dateStr == "" {
		return nil, authFail("date", "no %s header", headerSdkDate)
	}
	date, err := time.Parse(sdkDateFormat, dateStr)
	if err != nil {
		return nil, authFail("date", "%s must look like 20060102T150405Z", headerSdkDate)
	}
	if d := now.Sub(date); d > maxClockSkew || d < -maxClockSkew {
		return nil, authFail("date", "%s is more than %v from the server's time: request expired or clock skewed", headerSdkDate, maxClockSkew)
	}
	signedSet := map[string]bool{}
	for i, h := range a.signed {
		if h == "" || h != strings.ToLower(h) || (i > 0 && a.signed[i-1] >= h) {
			return nil, authFail("malformed", "SignedHeaders must be lower-case names in sorted order")
		}
		signedSet[h] = true
	}
	for _, must := range []string{"host", "x-sdk-date"} {
		if !signedSet[must] {
			return nil, authFail("malformed", "SignedHeaders must include %s", must)
		}
	}
	payload := hex.EncodeToString(sha256Sum(body))
	if claimed := r.Header.Get(headerBodyHash); claimed != "" {
		// An unsigned body is only acceptable when there is none: a
		// create's body must be covered by the signature.
		if !(claimed == unsignedBody && len(body) == 0) && claimed != payload {
			return nil, authFail("payload", "%s does not match the body (an unsigned payload is accepted only without a body)", headerBodyHash)
		}
		payload = claimed
	}
	cred, known := (*s.creds.Load())[a.access]
	secret := cred.SecretKey
	if !known {
		// Sign anyway, with a key nobody has, so that an unknown access key
		// costs the same time as a wrong signature.
		secret = s.decoy
	}
	want := signature(secret, dateStr, canonicalRequest(r, a.signed, payload))
	ok := subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(a.signature))) == 1
	if !known || !ok {
		return nil, authFail("signature", "signature does not match: check the access key, the secret key and what was signed")
	}
	return &cred, nil
}

func sha256Sum(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:]
}

func signature(secret, date, canonical string) string {
	toSign := signAlgorithm + "\n" + date + "\n" + hex.EncodeToString(sha256Sum([]byte(canonical)))
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(toSign))
	return hex.EncodeToString(mac.Sum(nil))
}

// canonicalRequest rebuilds the SDK's canonical request from what arrived.
func canonicalRequest(r *http.Request, signed []string, payload string) string {
	var b strings.Builder
	b.WriteString(r.Method + "\n")
	b.WriteString(canonicalURI(r.URL.EscapedPath()) + "\n")
	b.WriteString(canonicalQuery(r.URL.RawQuery) + "\n")
	for _, h := range signed {
		b.WriteString(h + ":" + headerValue(r, h) + "\n")
	}
	// The SDK joins the parts with "\n" and its header block already ends
	// in one: an empty line follows the headers.
	b.WriteString("\n")
	b.WriteString(strings.Join(signed, ";") + "\n")
	b.WriteString(payload)
	return b.String()
}

// headerValue is a signed header's value as the client signed it: Go keeps
// the Host header apart, and joins repeated headers as the SDK would
// stringify an array.
func headerValue(r *http.Request, name string) string {
	if name == "host" {
		return r.Host
	}
	return strings.Join(r.Header.Values(name), ",")
}

// canonicalURI escapes each segment of the path as the client wrote it
// (the SDK escapes the URL's pathname, so a %XX there is escaped again)
// and ends it with "/".
func canonicalURI(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = sdkEscape(s)
	}
	u := strings.Join(segs, "/")
	if !strings.HasSuffix(u, "/") {
		u += "/"
	}
	return u
}

// canonicalQuery sorts the decoded query's keys, and each key's values,
// and escapes them.
func canonicalQuery(raw string) string {
	vals, _ := url.ParseQuery(raw) // a malformed pair is dropped: the signature then fails
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		vs := append([]string(nil), vals[k]...)
		sort.Strings(vs)
		for _, v := range vs {
			parts = append(parts, sdkEscape(k)+"="+sdkEscape(v))
		}
	}
	return strings.Join(parts, "&")
}

// sdkEscape percent-encodes every byte but A-Z a-z 0-9 - . _ ~ (upper-case
// hex), UTF-8 bytes one by one: the SDK's urlEncode.
func sdkEscape(s string) string {
	var b bytes.Buffer
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// failLimiter counts failed authentications per client address: a token
// bucket of failBurst tokens, one back every failRefill. An address out of
// tokens is refused (429) before its signature is even checked, so secret
// keys cannot be guessed at speed. Bounded: at most maxTracked addresses.
type failLimiter struct {
	mu      sync.Mutex
	buckets map[string]*failBucket
	burst   float64
	refill  time.Duration
}

type failBucket struct {
	tokens float64
	at     time.Time
}

const maxTracked = 10000

func newFailLimiter(burst int, refill time.Duration) *failLimiter {
	return &failLimiter{buckets: map[string]*failBucket{}, burst: float64(burst), refill: refill}
}

func (l *failLimiter) level(b *failBucket, now time.Time) float64 {
	return min(l.burst, b.tokens+float64(now.Sub(b.at))/float64(l.refill))
}

// blocked reports whether addr has no failures left, and if so how long
// until it has one again.
func (l *failLimiter) blocked(addr string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[addr]
	if b == nil {
		return false, 0
	}
	lv := l.level(b, now)
	if lv >= 1 {
		return false, 0
	}
	return true, time.Duration((1 - lv) * float64(l.refill))
}

// fail spends one of addr's failures.
func (l *failLimiter) fail(addr string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[addr]
	if b == nil {
		if len(l.buckets) >= maxTracked {
			l.pruneLocked(now)
		}
		b = &failBucket{tokens: l.burst, at: now}
		l.buckets[addr] = b
	}
	b.tokens, b.at = max(0, l.level(b, now)-1), now
}

// pruneLocked forgets addresses back to a full bucket; if none are, the
// oldest half (a flood of addresses must not grow the map without bound).
func (l *failLimiter) pruneLocked(now time.Time) {
	for a, b := range l.buckets {
		if l.level(b, now) >= l.burst {
			delete(l.buckets, a)
		}
	}
	if len(l.buckets) < maxTracked {
		return
	}
	type aged struct {
		addr string
		at   time.Time
	}
	all := make([]aged, 0, len(l.buckets))
	for a, b := range l.buckets {
		all = append(all, aged{a, b.at})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].at.Before(all[j].at) })
	for _, a := range all[:len(all)/2] {
		delete(l.buckets, a.addr)
	}
}
