package dash

import "testing"

// FuzzMPD: any input either fails to parse or round-trips to a document
// that parses again and writes the same bytes; listing its
// Representations never panics.
func FuzzMPD(f *testing.F) {
	f.Add([]byte(timelineMPD))
	f.Add([]byte(`<MPD type="static" mediaPresentationDuration="PT4S"><Period><AdaptationSet><Representation id="0" bandwidth="1">` +
		`<SegmentTemplate timescale="1000" duration="1000" initialization="i$RepresentationID$.m4s" media="c$Number%05d$.m4s"/>` +
		`</Representation></AdaptationSet></Period></MPD>`))
	f.Add([]byte(`<MPD><Period><AdaptationSet><Representation id="a"><BaseURL>f.mp4</BaseURL><SegmentList><Initialization range="0-9"/>` +
		`<SegmentURL mediaRange="10-99" indexRange="10-20"/></SegmentList></Representation></AdaptationSet></Period></MPD>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			return
		}
		out := m.Bytes()
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("output does not parse: %v\n%s", err, out)
		}
		if string(again.Bytes()) != string(out) {
			t.Fatalf("second round trip differs:\n%s\n%s", out, again.Bytes())
		}
		n := 0
		m.Representations(func(string) bool { n++; return n < 50 })
	})
}
