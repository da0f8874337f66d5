package control

import (
	"bytes"
	"strings"
	"testing"

	"github.com/mpcfs/mpcfs/crypto"
)

const goodRequest = `{"input":{"bucket":"media","location":"region1","object":"vod/master.m3u8"},
 "output":{"bucket":"public","location":"region1","object":"out/"},
 "encryption":{"hls_encrypt":{"key":"MDEyMzQ1Njc4OWFiY2RlZg==","url":"https://k/1","iv":"abcdefghijklmnop"},
   "preview_duration":10,
   "multidrm":{"emi":16418,"streaming_mode":"HLS","drm_list":["PLAYREADY","WIDEVINE"],"encrypt_audio":1}},
 "user_data":"u"}`

func TestParseGoodRequest(t *testing.T) {
	p, err := ParseRequest([]byte(goodRequest), "region1")
	if err != nil {
		t.Fatal(err)
	}
	if p.Algorithm != crypto.AES128CTR {
		t.Errorf("default algorithm = %s, want AES-128-CTR", p.Algorithm)
	}
	if string(p.Key) != "0123456789abcdef" || string(p.IV) != "abcdefghijklmnop" {
		t.Errorf("key/iv decoded wrong")
	}
	if p.Output.Object != "out" || p.PreviewDuration != 10 || p.UserData != "u" || p.MultiDRM == nil {
		t.Errorf("params = %+v", p)
	}
}

func TestDecode16(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string
	}{
		{"0123456789abcdef", "0123456789abcdef"},         // 16 characters: raw bytes
		{"MDEyMzQ1Njc4OWFiY2RlZg==", "0123456789abcdef"}, // base64
		{"MDEyMzQ1Njc4OWFiY2RlZg", "0123456789abcdef"},   // unpadded
		{"MDEyMzQ1Njc=", ""},                             // 8 bytes
		{"0123456789abcdefg", ""},                        // 17 characters
		{"", ""},
	} {
		if got := decode16(c.in); string(got) != c.want {
			t.Errorf("decode16(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestRegionMustMatch(t *testing.T) {
	_, err := ParseRequest([]byte(goodRequest), "region9")
	if err == nil || err.Code != CodeBadRequest || !strings.Contains(err.Msg, "input.location") {
		t.Fatalf("got %v", err)
	}
}

// FuzzParseRequest: any bytes give params or an MPC.10202 naming something,
// never a panic, and never an error message holding the request's key.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(goodRequest))
	f.Add([]byte(`{"input":null}`))
	f.Add([]byte(`{"encryption":{"hls_encrypt":{"key":5}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseRequest(data, "region1")
		if (p == nil) == (err == nil) {
			t.Fatalf("params %v and error %v", p, err)
		}
		if err != nil {
			if err.Code != CodeBadRequest || err.Msg == "" {
				t.Fatalf("error %+v", err)
			}
			if bytes.Contains(data, []byte(`"MDEyMzQ1Njc4OWFiY2RlZg=="`)) && strings.Contains(err.Msg, "MDEyMzQ1Njc4OWFiY2RlZg") {
				t.Fatalf("error message holds the key: %s", err.Msg)
			}
		}
	})
}
