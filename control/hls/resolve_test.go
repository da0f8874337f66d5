package hls

import (
	"strconv"
	"strings"
	"testing"
)

func TestResolveURI(t *testing.T) {
	for _, tc := range []struct{ pl, uri, want string }{
		{"vod/a/index.m3u8", "seg1.ts", "vod/a/seg1.ts"},
		{"vod/a/index.m3u8", "720p/seg1.ts", "vod/a/720p/seg1.ts"},
		{"vod/a/index.m3u8", "./720p/./seg1.ts", "vod/a/720p/seg1.ts"},
		{"vod/a/720p/index.m3u8", "../keys/../360p/seg1.ts", "vod/a/360p/seg1.ts"},
		{"vod/a/index.m3u8", "../../x.ts", "x.ts"},
		{"index.m3u8", "seg.ts", "seg.ts"},
		{"vod/a/index.m3u8", "all%20mp4/seg%2Cx.m4s", "vod/a/all mp4/seg,x.m4s"},
		{"vod/a/index.m3u8", "s%C3%A9ance.ts", "vod/a/séance.ts"},
		{"vod/a/index.m3u8", "séance.ts", "vod/a/séance.ts"},
		{"vod/a/index.m3u8", "a+b.ts", "vod/a/a+b.ts"},
		{"vod/a/index.m3u8", "a%3Fb%23c.ts", "vod/a/a?b#c.ts"}, // escaped ? and # are names
		{"vod/a/index.m3u8", "x/seg:1.ts", "vod/a/x/seg:1.ts"},
		{"vod/a/index.m3u8", "./seg:1.ts", "vod/a/seg:1.ts"},
		{"vod/a/index.m3u8", "%2e%2e/b/seg.ts", "vod/b/seg.ts"}, // browsers read %2e%2e as ..
	} {
		got, err := ResolveURI(tc.pl, tc.uri)
		if err != nil || got != tc.want {
			t.Errorf("ResolveURI(%q, %q) = %q, %v; want %q", tc.pl, tc.uri, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ pl, uri, want string }{
		{"vod/a/index.m3u8", "", "empty"},
		{"vod/a/index.m3u8", "http://cdn.example/seg.ts", "has a scheme"},
		{"vod/a/index.m3u8", "s3://bucket/seg.ts", "has a scheme"},
		{"vod/a/index.m3u8", "data:video/mp2t;base64,AAAA", "has a scheme"},
		{"vod/a/index.m3u8", "seg:1.ts", "has a scheme"},
		{"vod/a/index.m3u8", "//host/seg.ts", "network-path"},
		{"vod/a/index.m3u8", "/vod/a/seg.ts", "absolute path"},
		{"vod/a/index.m3u8", "../../../x.ts", ".. above its root"},
		{"index.m3u8", "../x.ts", ".. above its root"},
		{"vod/a/index.m3u8", "%2e%2e/%2E%2E/%2e%2e/x.ts", ".. above its root"},
		{"vod/a/index.m3u8", "seg.ts?token=1", "query strings and fragments"},
		{"vod/a/index.m3u8", "seg.ts#t=1", "query strings and fragments"},
		{"vod/a/index.m3u8", `..\..\x.ts`, "backslash"},
		{"vod/a/index.m3u8", "..%2F..%2F..%2Fx.ts", "escaped '/'"},
		{"vod/a/index.m3u8", "a%5Cb.ts", "escaped '/'"},
		{"vod/a/index.m3u8", "a%00.ts", "control character"},
		{"vod/a/index.m3u8", "a%ff.ts", "not valid UTF-8"},
		{"vod/a/index.m3u8", "a%zz.ts", "bad percent-encoding"},
		{"vod/a/index.m3u8", "a//b.ts", "empty path segment"},
		{"vod/a/index.m3u8", "720p/", "names a directory"},
		{"vod/a/index.m3u8", "720p/..", "names a directory"},
		{"vod/a/index.m3u8", ".", "names a directory"},
	} {
		got, err := ResolveURI(tc.pl, tc.uri)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ResolveURI(%q, %q) = %q, %v; want error with %q", tc.pl, tc.uri, got, err, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), strconv.Quote(tc.uri)) {
			t.Errorf("error %q does not name the URI %q", err, tc.uri)
		}
	}
}
