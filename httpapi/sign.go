package httpapi

import (
	"encoding/hex"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
)

// Sign signs r for the API as Huawei Cloud's SDKs do (SDK-HMAC-SHA256):
// it sets X-Sdk-Date from date and Authorization, signing Host, X-Sdk-Date
// and every header already set but Authorization, User-Agent and
// Content-Length. body must be the bytes r will send. For Go clients, the
// tests and the bench; other languages use Huawei Cloud's SDKs.
func Sign(r *http.Request, body []byte, c Credential, date time.Time) {
	if r.Host == "" {
		r.Host = r.URL.Host
	}
	r.Header.Set(headerSdkDate, date.UTC().Format(sdkDateFormat))
	signed := []string{"host"}
	for name := range r.Header {
		switch n := strings.ToLower(name); n {
		case "authorization", "user-agent", "content-length", "host":
		default:
			signed = append(signed, n)
		}
	}
	sort.Strings(signed)
	payload := hex.EncodeToString(sha256Sum(body))
	sig := signature(c.SecretKey, r.Header.Get(headerSdkDate), canonicalRequest(r, signed, payload))
	r.Header.Set("Authorization", fmt.Sprintf("%s Access=%s, SignedHeaders=%s, Signature=%s", signAlgorithm, c.AccessKey, strings.Join(signed, ";"), sig))
}
