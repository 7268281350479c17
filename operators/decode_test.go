package operators

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// ts0 is the record timestamp of most test records: 2026-01-01T00:00:00Z.
var ts0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

const skewMS = 5 * 60 * 1000 // the default MaxFutureSkew

func testDecoder() *Decoder { return NewDecoder((&Config{}).EnsureDefaults()) }

// nilStr stands for a nil byte slice in evView.
const nilStr = "<nil>"

func bs(b []byte) string {
	if b == nil {
		return nilStr
	}
	return string(b)
}

// evView is the part of an Event the decoder extracts, comparable with ==.
type evView struct {
	ID, Type                          string
	Time, OriginalTime                int64
	TimeAdjusted, Ephemeral           bool
	Profile, Session, Source          string
	Properties, Context, Traits, Tags string
	URL, Device                       string
	Topic                             string
	Partition                         int32
	Offset, RecordTime                int64
	RawSame                           bool // Raw is the record value itself
}

func viewOf(ev *Event, rec *Record) evView {
	return evView{
		ID: bs(ev.ID), Type: ev.Type, Time: ev.Time, OriginalTime: ev.OriginalTime,
		TimeAdjusted: ev.TimeAdjusted, Ephemeral: ev.Ephemeral,
		Profile: bs(ev.Profile), Session: bs(ev.Session), Source: bs(ev.Source),
		Properties: bs(ev.Properties), Context: bs(ev.Context), Traits: bs(ev.Traits), Tags: bs(ev.Tags),
		URL: bs(ev.URL), Device: bs(ev.Device),
		Topic: ev.Topic, Partition: ev.Partition, Offset: ev.Offset, RecordTime: ev.RecordTime,
		RawSame: len(ev.Raw) == len(rec.Value) && (len(rec.Value) == 0 || &ev.Raw[0] == &rec.Value[0]),
	}
}

// baseView is what `{"type":"page-view"}` decodes to from a record at ts0.
func baseView() evView {
	return evView{
		ID: nilStr, Type: "page-view", Time: ts0, Profile: nilStr, Session: nilStr, Source: nilStr,
		Properties: nilStr, Context: nilStr, Traits: nilStr, Tags: nilStr, URL: nilStr, Device: nilStr,
		Topic: "in", Partition: 3, Offset: 42, RecordTime: ts0, RawSame: true,
	}
}

func TestDecodeFields(t *testing.T) {
	type tc struct {
		name string
		in   string
		ts   int64 // 0 means ts0
		want func(v *evView)
	}
	const pv = `"type":"page-view"`
	tests := []tc{
		{"minimal", `{` + pv + `}`, 0, func(v *evView) {}},
		{"whitespace everywhere", " \t\r\n{ \n\"type\" :\t\"page-view\" , \"id\"\r:\"e\" }\n ", 0, func(v *evView) { v.ID = "e" }},

		// id
		{"id", `{"id":"e-1",` + pv + `}`, 0, func(v *evView) { v.ID = "e-1" }},
		{"id null", `{"id":null,` + pv + `}`, 0, func(v *evView) {}},
		{"id empty is absent", `{"id":"",` + pv + `}`, 0, func(v *evView) {}},
		{"id max length", `{"id":"` + strings.Repeat("x", 512) + `",` + pv + `}`, 0, func(v *evView) { v.ID = strings.Repeat("x", 512) }},
		{"id escaped within limit", `{"id":"` + strings.Repeat(`\u00e9`, 256) + `",` + pv + `}`, 0, func(v *evView) { v.ID = strings.Repeat("é", 256) }},

		// type normalisation
		{"type Page View", `{"type":"Page View"}`, 0, func(v *evView) {}},
		{"type trimmed", `{"type":"  Page View \t"}`, 0, func(v *evView) {}},
		{"type escaped spaces trimmed", `{"type":"\n\tPAGE VIEW\r\n"}`, 0, func(v *evView) {}},
		{"type inner spaces each become -", `{"type":"Sign  Up"}`, 0, func(v *evView) { v.Type = "sign--up" }},
		{"type inner tab kept", `{"type":"a\tb"}`, 0, func(v *evView) { v.Type = "a\tb" }},
		{"type non-ASCII", `{"type":" Café Ouvert "}`, 0, func(v *evView) { v.Type = "café-ouvert" }},
		{"type non-ASCII upper", `{"type":"ÉTÉ Été"}`, 0, func(v *evView) { v.Type = "été-été" }},
		{"type escaped key", `{"t\u0079pe":"Click"}`, 0, func(v *evView) { v.Type = "click" }},
		{"type that only contains a system name", `{"type":"visit-ended-twice"}`, 0, func(v *evView) { v.Type = "visit-ended-twice" }},

		// time
		{"time RFC 3339", `{` + pv + `,"time":"2026-01-01T00:01:02.345Z"}`, 0, func(v *evView) { v.Time = ts0 + 62345 }},
		{"time epoch ms", `{` + pv + `,"time":1767225662345}`, 0, func(v *evView) { v.Time = ts0 + 62345 }},
		{"time epoch ms fraction truncated", `{` + pv + `,"time":1767225662345.999}`, 0, func(v *evView) { v.Time = ts0 + 62345 }},
		{"time epoch 0", `{` + pv + `,"time":0}`, 0, func(v *evView) { v.Time = 0 }},
		{"time epoch max", `{` + pv + `,"time":253402300799999}`, NoTimestamp, func(v *evView) { v.Time = maxTime; v.RecordTime = NoTimestamp }},
		{"time absent", `{` + pv + `}`, 0, func(v *evView) {}},
		{"time null", `{` + pv + `,"time":null}`, 0, func(v *evView) {}},
		{"time no record timestamp", `{` + pv + `,"time":5}`, NoTimestamp, func(v *evView) { v.Time = 5; v.RecordTime = NoTimestamp }},
		{"time escaped string", `{` + pv + `,"time":"2026\u002d01-01T00:00:00Z"}`, 0, func(v *evView) {}},

		// the skew rule
		{"skew: exactly 5m ahead kept", `{` + pv + `,"time":1767225900000}`, 0, func(v *evView) { v.Time = ts0 + skewMS }},
		{"skew: 5m+1ms ahead adjusted", `{` + pv + `,"time":1767225900001}`, 0, func(v *evView) {
			v.Time, v.OriginalTime, v.TimeAdjusted = ts0, ts0+skewMS+1, true
		}},
		{"skew: far future string adjusted", `{` + pv + `,"time":"2026-01-01T10:00:00Z"}`, 0, func(v *evView) {
			v.Time, v.OriginalTime, v.TimeAdjusted = ts0, ts0+10*3600*1000, true
		}},
		{"skew: past never adjusted", `{` + pv + `,"time":0}`, 0, func(v *evView) { v.Time = 0 }},
		{"skew: no record timestamp", `{` + pv + `,"time":253402300799999}`, NoTimestamp, func(v *evView) { v.Time = maxTime; v.RecordTime = NoTimestamp }},
		{"skew: negative record timestamp is no timestamp", `{` + pv + `,"time":1767225662345}`, -1, func(v *evView) { v.Time = ts0 + 62345; v.RecordTime = -1 }},
		{"skew: record timestamp near MaxInt64 does not overflow", `{` + pv + `,"time":1767225662345}`, math.MaxInt64 - 1000, func(v *evView) {
			v.Time = ts0 + 62345
			v.RecordTime = math.MaxInt64 - 1000
		}},
		{"skew: record timestamp 0", `{` + pv + `,"time":300001}`, -2, func(v *evView) { v.Time = 300001; v.RecordTime = -2 }},

		// profile, session, source
		{"refs as strings", `{` + pv + `,"profile":"p","session":"s","source":"web"}`, 0, func(v *evView) { v.Profile, v.Session, v.Source = "p", "s", "web" }},
		{"refs as objects", `{` + pv + `,"profile":{"id":"p","n":1},"session":{"x":[{"id":"no"}],"id":"s"},"source":{"id":"web","id2":null}}`, 0, func(v *evView) {
			v.Profile, v.Session, v.Source = "p", "s", "web"
		}},
		{"refs null", `{` + pv + `,"profile":null,"session":null,"source":null}`, 0, func(v *evView) {}},
		{"refs empty", `{` + pv + `,"profile":"","session":{"id":""},"source":{}}`, 0, func(v *evView) {}},
		{"ref object id null", `{` + pv + `,"session":{"id":null,"other":"x"}}`, 0, func(v *evView) {}},
		{"ref escaped", `{` + pv + `,"profile":"p\"1\\"}`, 0, func(v *evView) { v.Profile = `p"1\` }},

		// raw objects kept exactly
		{"properties raw", `{` + pv + `,"properties": { "a" : [1, 2.5e-3, -0] , "b":{"c":"\u00e9\n"}, "d":null }  }`, 0, func(v *evView) {
			v.Properties = `{ "a" : [1, 2.5e-3, -0] , "b":{"c":"\u00e9\n"}, "d":null }`
		}},
		{"properties empty", `{` + pv + `,"properties":{}}`, 0, func(v *evView) { v.Properties = `{}` }},
		{"properties null", `{` + pv + `,"properties":null}`, 0, func(v *evView) {}},
		{"traits raw", `{` + pv + `,"traits":{"plan":"pro","seats":3}}`, 0, func(v *evView) { v.Traits = `{"plan":"pro","seats":3}` }},
		{"context raw", `{` + pv + `,"context":{"ip":"1.2.3.4","locale":"fr"}}`, 0, func(v *evView) { v.Context = `{"ip":"1.2.3.4","locale":"fr"}` }},

		// context extraction
		{"context url and device string", `{` + pv + `,"context":{"page":{"title":"T","url":"https://x.example/a?b=1"},"device":"mobile"}}`, 0, func(v *evView) {
			v.Context = `{"page":{"title":"T","url":"https://x.example/a?b=1"},"device":"mobile"}`
			v.URL, v.Device = "https://x.example/a?b=1", "mobile"
		}},
		{"context device object", `{` + pv + `,"context":{"device":{"os":"ios","type":"tablet"}}}`, 0, func(v *evView) {
			v.Context = `{"device":{"os":"ios","type":"tablet"}}`
			v.Device = "tablet"
		}},
		{"context escaped url", `{` + pv + `,"context":{"page":{"url":"https:\/\/x\/\u00e9"}}}`, 0, func(v *evView) {
			v.Context = `{"page":{"url":"https:\/\/x\/\u00e9"}}`
			v.URL = "https://x/é"
		}},
		{"context odd shapes ignored", `{` + pv + `,"context":{"page":"p","device":7,"url":"u","type":"t"}}`, 0, func(v *evView) {
			v.Context = `{"page":"p","device":7,"url":"u","type":"t"}`
		}},
		{"context url not a string", `{` + pv + `,"context":{"page":{"url":["u"]},"device":{"type":1}}}`, 0, func(v *evView) {
			v.Context = `{"page":{"url":["u"]},"device":{"type":1}}`
		}},
		{"context nested page ignored", `{` + pv + `,"context":{"x":{"page":{"url":"u"}}}}`, 0, func(v *evView) {
			v.Context = `{"x":{"page":{"url":"u"}}}`
		}},
		{"context null", `{` + pv + `,"context":null}`, 0, func(v *evView) {}},

		// tags and options
		{"tags", `{` + pv + `,"tags":["a", "b\u00e9"]}`, 0, func(v *evView) { v.Tags = `["a", "b\u00e9"]` }},
		{"tags empty", `{` + pv + `,"tags":[ ]}`, 0, func(v *evView) { v.Tags = `[ ]` }},
		{"tags null", `{` + pv + `,"tags":null}`, 0, func(v *evView) {}},
		{"ephemeral true", `{` + pv + `,"options":{"ephemeral":true}}`, 0, func(v *evView) { v.Ephemeral = true }},
		{"ephemeral false", `{` + pv + `,"options":{"ephemeral":false,"x":[true]}}`, 0, func(v *evView) {}},
		{"ephemeral null", `{` + pv + `,"options":{"ephemeral":null}}`, 0, func(v *evView) {}},
		{"options null", `{` + pv + `,"options":null}`, 0, func(v *evView) {}},
		{"options other", `{` + pv + `,"options":{"Ephemeral":true}}`, 0, func(v *evView) {}},

		// string escapes
		{"escape newline", `{` + pv + `,"id":"a\nb"}`, 0, func(v *evView) { v.ID = "a\nb" }},
		{"escape all simple", `{` + pv + `,"id":"\"\\\/\b\f\n\r\t"}`, 0, func(v *evView) { v.ID = "\"\\/\b\f\n\r\t" }},
		{"escape latin", `{` + pv + `,"id":"caf\u00e9"}`, 0, func(v *evView) { v.ID = "café" }},
		{"escape upper hex", `{` + pv + `,"id":"caf\u00E9\u4E2D"}`, 0, func(v *evView) { v.ID = "café中" }},
		{"escape NUL", `{` + pv + `,"id":"a\u0000b"}`, 0, func(v *evView) { v.ID = "a\x00b" }},
		{"escape surrogate pair", `{` + pv + `,"id":"\ud83d\ude00!"}`, 0, func(v *evView) { v.ID = "😀!" }},
		{"escape surrogate pair upper", `{` + pv + `,"id":"\uD83D\uDE00"}`, 0, func(v *evView) { v.ID = "😀" }},
		{"escape lone high surrogate", `{` + pv + `,"id":"\ud83dx"}`, 0, func(v *evView) { v.ID = "\uFFFDx" }},
		{"escape lone high surrogate at end", `{` + pv + `,"id":"\ud83d"}`, 0, func(v *evView) { v.ID = "\uFFFD" }},
		{"escape lone low surrogate", `{` + pv + `,"id":"\ude00"}`, 0, func(v *evView) { v.ID = "\uFFFD" }},
		{"escape high then non-low", `{` + pv + `,"id":"\ud83d\u0041"}`, 0, func(v *evView) { v.ID = "\uFFFDA" }},
		{"escape two highs then low", `{` + pv + `,"id":"\ud83d\ud83d\ude00"}`, 0, func(v *evView) { v.ID = "\uFFFD😀" }},
		{"raw UTF-8", `{` + pv + `,"id":"中文😀é"}`, 0, func(v *evView) { v.ID = "中文😀é" }},
		{"DEL is not a control character", "{" + pv + ",\"id\":\"a\x7fb\"}", 0, func(v *evView) { v.ID = "a\x7fb" }},

		// duplicate keys: the last wins
		{"dup id", `{"id":"a",` + pv + `,"id":"b"}`, 0, func(v *evView) { v.ID = "b" }},
		{"dup id then null", `{"id":"a",` + pv + `,"id":null}`, 0, func(v *evView) {}},
		{"dup type", `{"type":"a",` + pv + `}`, 0, func(v *evView) {}},
		{"dup time then null", `{` + pv + `,"time":5,"time":null}`, 0, func(v *evView) {}},
		{"dup time", `{` + pv + `,"time":"2026-01-01T00:00:01Z","time":7}`, 0, func(v *evView) { v.Time = 7 }},
		{"dup profile", `{` + pv + `,"profile":"a","profile":{"id":"b"}}`, 0, func(v *evView) { v.Profile = "b" }},
		{"dup ref id", `{` + pv + `,"session":{"id":"a","id":"b"}}`, 0, func(v *evView) { v.Session = "b" }},
		{"dup ref id null", `{` + pv + `,"session":{"id":"a","id":null}}`, 0, func(v *evView) {}},
		{"dup properties", `{` + pv + `,"properties":{"a":1},"properties":{"b":2}}`, 0, func(v *evView) { v.Properties = `{"b":2}` }},
		{"dup properties null", `{` + pv + `,"properties":{"a":1},"properties":null}`, 0, func(v *evView) {}},
		{"dup tags", `{` + pv + `,"tags":["a"],"tags":["b"]}`, 0, func(v *evView) { v.Tags = `["b"]` }},
		{"dup options", `{` + pv + `,"options":{"ephemeral":true},"options":{}}`, 0, func(v *evView) {}},
		{"dup options null", `{` + pv + `,"options":{"ephemeral":true},"options":null}`, 0, func(v *evView) {}},
		{"dup ephemeral", `{` + pv + `,"options":{"ephemeral":true,"ephemeral":null}}`, 0, func(v *evView) {}},
		{"dup context replaces url and device", `{` + pv + `,"context":{"page":{"url":"u"},"device":"d"},"context":{}}`, 0, func(v *evView) { v.Context = `{}` }},
		{"dup context null clears url", `{` + pv + `,"context":{"page":{"url":"u"}},"context":null}`, 0, func(v *evView) {}},
		{"dup page", `{` + pv + `,"context":{"page":{"url":"u"},"page":{"title":"t"}}}`, 0, func(v *evView) {
			v.Context = `{"page":{"url":"u"},"page":{"title":"t"}}`
		}},
		{"dup url", `{` + pv + `,"context":{"page":{"url":"u","url":null}}}`, 0, func(v *evView) {
			v.Context = `{"page":{"url":"u","url":null}}`
		}},
		{"dup url second wins", `{` + pv + `,"context":{"page":{"url":"u","url":"v"}}}`, 0, func(v *evView) {
			v.Context = `{"page":{"url":"u","url":"v"}}`
			v.URL = "v"
		}},
		{"dup device", `{` + pv + `,"context":{"device":"d","device":{"os":"x"}}}`, 0, func(v *evView) {
			v.Context = `{"device":"d","device":{"os":"x"}}`
		}},
		{"dup device type", `{` + pv + `,"context":{"device":{"type":"a","type":7}}}`, 0, func(v *evView) {
			v.Context = `{"device":{"type":"a","type":7}}`
		}},

		// other members are validated but ignored
		{"unknown members", `{"x":{"y":[1,-2.5E+3,true,false,null,"s",{}],"z":[]},` + pv + `,"ID":"no","Type":"no"}`, 0, func(v *evView) {}},
		{"depth 64 accepted", `{` + pv + `,"x":` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + `}`, 0, func(v *evView) {}},
		{"depth 64 in properties", `{` + pv + `,"properties":` + strings.Repeat(`{"a":`, 63) + `1` + strings.Repeat("}", 63) + `}`, 0, func(v *evView) {
			v.Properties = strings.Repeat(`{"a":`, 63) + `1` + strings.Repeat("}", 63)
		}},
	}
	d := testDecoder()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := tt.ts
			if ts == 0 {
				ts = ts0
			}
			rec := &Record{Topic: "in", Partition: 3, Offset: 42, Value: []byte(tt.in), Timestamp: ts}
			var ev Event
			if err := d.Decode(rec, &ev); err != nil {
				t.Fatalf("Decode(%s): %v", tt.in, err)
			}
			want := baseView()
			tt.want(&want)
			if got := viewOf(&ev, rec); got != want {
				t.Errorf("Decode(%s)\n got %+v\nwant %+v", tt.in, got, want)
			}
			checkEventInvariants(t, tt.in, &ev)
		})
	}
}

// TestDecodeTimeForms decodes the time field in every accepted form.
func TestDecodeTimeForms(t *testing.T) {
	at := func(y int, mo time.Month, d, h, mi, s, ns int, off int) int64 {
		return time.Date(y, mo, d, h, mi, s, ns, time.FixedZone("", off)).UnixMilli()
	}
	tests := []struct {
		in   string
		want int64
	}{
		{`"2025-06-07T08:09:10Z"`, at(2025, 6, 7, 8, 9, 10, 0, 0)},
		{`"2025-06-07T08:09:10z"`, at(2025, 6, 7, 8, 9, 10, 0, 0)},
		{`"2025-06-07t08:09:10Z"`, at(2025, 6, 7, 8, 9, 10, 0, 0)},
		{`"2025-06-07 08:09:10Z"`, at(2025, 6, 7, 8, 9, 10, 0, 0)},
		{`"2025-06-07T08:09:10"`, at(2025, 6, 7, 8, 9, 10, 0, 0)},
		{`"2025-06-07T08:09:10+01:00"`, at(2025, 6, 7, 8, 9, 10, 0, 3600)},
		{`"2025-06-07T08:09:10+0100"`, at(2025, 6, 7, 8, 9, 10, 0, 3600)},
		{`"2025-06-07T08:09:10+01"`, at(2025, 6, 7, 8, 9, 10, 0, 3600)},
		{`"2025-06-07T08:09:10-05:30"`, at(2025, 6, 7, 8, 9, 10, 0, -5*3600-1800)},
		{`"2025-06-07T08:09:10-0530"`, at(2025, 6, 7, 8, 9, 10, 0, -5*3600-1800)},
		{`"2025-06-07T08:09:10+23:59"`, at(2025, 6, 7, 8, 9, 10, 0, 23*3600+59*60)},
		{`"2025-06-07T08:09:10-00:00"`, at(2025, 6, 7, 8, 9, 10, 0, 0)},
		{`"2025-06-07T08:09Z"`, at(2025, 6, 7, 8, 9, 0, 0, 0)},
		{`"2025-06-07T08:09"`, at(2025, 6, 7, 8, 9, 0, 0, 0)},
		{`"2025-06-07T08:09+02:00"`, at(2025, 6, 7, 8, 9, 0, 0, 7200)},
		{`"2025-06-07T08:09:10.Z"`, -1},
		{`"2025-06-07T08:09:10.1Z"`, at(2025, 6, 7, 8, 9, 10, 100e6, 0)},
		{`"2025-06-07T08:09:10.12Z"`, at(2025, 6, 7, 8, 9, 10, 120e6, 0)},
		{`"2025-06-07T08:09:10.123Z"`, at(2025, 6, 7, 8, 9, 10, 123e6, 0)},
		{`"2025-06-07T08:09:10.1239Z"`, at(2025, 6, 7, 8, 9, 10, 123e6, 0)},
		{`"2025-06-07T08:09:10.12399Z"`, at(2025, 6, 7, 8, 9, 10, 123e6, 0)},
		{`"2025-06-07T08:09:10.123999Z"`, at(2025, 6, 7, 8, 9, 10, 123e6, 0)},
		{`"2025-06-07T08:09:10.1239999Z"`, at(2025, 6, 7, 8, 9, 10, 123e6, 0)},
		{`"2025-06-07T08:09:10.12399999Z"`, at(2025, 6, 7, 8, 9, 10, 123e6, 0)},
		{`"2025-06-07T08:09:10.999999999Z"`, at(2025, 6, 7, 8, 9, 10, 999e6, 0)},
		{`"2025-06-07T08:09:10.0000000001Z"`, at(2025, 6, 7, 8, 9, 10, 0, 0)},
		{`"2025-06-07T08:09:10,5Z"`, at(2025, 6, 7, 8, 9, 10, 500e6, 0)},
		{`"2025-06-07T08:09:10.5"`, at(2025, 6, 7, 8, 9, 10, 500e6, 0)},
		{`"2025-06-07T08:09:10.5-01:00"`, at(2025, 6, 7, 8, 9, 10, 500e6, -3600)},
		{`"1970-01-01T00:00:00Z"`, 0},
		{`"1970-01-01T00:00:00.0009Z"`, 0},
		{`"1970-01-01T01:00:00+01:00"`, 0},
		{`"9999-12-31T23:59:59.999Z"`, maxTime},
		{`"9999-12-31T23:59:59.9999999Z"`, maxTime},
		{`"2024-02-29T12:00:00Z"`, at(2024, 2, 29, 12, 0, 0, 0, 0)},
		{`"2000-02-29T12:00:00Z"`, at(2000, 2, 29, 12, 0, 0, 0, 0)},
		{`1749283750123`, 1749283750123},
		{`1749283750123.9`, 1749283750123},
		{`1749283750123.0`, 1749283750123},
		{`0.999`, 0},
		{`253402300799999`, maxTime},
		// Rejected: -1 means invalid-time.
		{`"1969-12-31T23:59:59.999Z"`, -1},
		{`"1970-01-01T00:00:00+00:01"`, -1},
		{`"9999-12-31T23:59:59.999-00:01"`, -1},
		{`"2025-06-07T08:09:10+24:00"`, -1},
		{`"2025-06-07T08:09:10+01:60"`, -1},
		{`"2025-06-07T08:09:10+1"`, -1},
		{`"2025-06-07T08:09:10+01:0"`, -1},
		{`"2025-06-07T08:09:10+01:"`, -1},
		{`"2025-06-07T08:09:10+010"`, -1},
		{`"2025-06-07T08:09:10+01:000"`, -1},
		{`"2025-06-07T08:09:10 Z"`, -1},
		{`"2025-06-07T08:09:10ZZ"`, -1},
		{`"2025-06-07T08:09:10UTC"`, -1},
		{`"2025-06-07T08:09.5Z"`, -1},
		{`"2025-06-07T08:9:10Z"`, -1},
		{`"2025-06-07T8:09:10Z"`, -1},
		{`"2025-06-07T08:09:1Z"`, -1},
		{`"2025-6-07T08:09:10Z"`, -1},
		{`"2025-06-07"`, -1},
		{`"2025-06-07T08"`, -1},
		{`"2025-06-07T08:09:10.-1Z"`, -1},
		{`"25-06-07T08:09:10Z"`, -1},
		{`"+2025-06-07T08:09:10Z"`, -1},
		{`"2025/06/07T08:09:10Z"`, -1},
		{`"2025-06-07X08:09:10Z"`, -1},
		{`"2025-06-07T08-09-10Z"`, -1},
		{`""`, -1},
		{`"yesterday"`, -1},
		{`1e12`, -1},
		{`1.5E3`, -1},
		{`-1`, -1},
		{`-0`, -1},
		{`253402300800000`, -1},
		{`1000000000000000`, -1},
		{`99999999999999999999999`, -1},
	}
	d := testDecoder()
	for _, tt := range tests {
		rec := &Record{Value: []byte(`{"type":"x","time":` + tt.in + `}`), Timestamp: NoTimestamp}
		var ev Event
		err := d.Decode(rec, &ev)
		switch {
		case tt.want < 0 && err == nil:
			t.Errorf("time %s: accepted as %d, want invalid-time", tt.in, ev.Time)
		case tt.want < 0 && err.Reason != ReasonInvalidTime:
			t.Errorf("time %s: %v, want invalid-time", tt.in, err)
		case tt.want >= 0 && err != nil:
			t.Errorf("time %s: %v", tt.in, err)
		case tt.want >= 0 && ev.Time != tt.want:
			t.Errorf("time %s = %d (%s), want %d (%s)", tt.in, ev.Time, AppendTime(nil, ev.Time), tt.want, AppendTime(nil, tt.want))
		}
	}
}

func TestDecodeDeadLetters(t *testing.T) {
	long := strings.Repeat("x", 513)
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	const pv = `"type":"page-view"`
	tests := []struct {
		in     string
		ts     int64 // 0 means ts0
		reason Reason
		detail string // checked when not empty
	}{
		// too-large
		{`{` + pv + `,"properties":{"s":"` + strings.Repeat("a", 1<<20) + `"}}`, 0, ReasonTooLarge, "value is 1048618 bytes, limit 1048576"},
		{`{` + pv + `,"id":"` + long + `"}`, 0, ReasonTooLarge, "id is longer than 512 bytes"},
		{`{` + pv + `,"profile":"` + long + `"}`, 0, ReasonTooLarge, "profile is longer than 512 bytes"},
		{`{` + pv + `,"session":{"id":"` + long + `"}}`, 0, ReasonTooLarge, "session is longer than 512 bytes"},
		{`{` + pv + `,"source":"` + long + `"}`, 0, ReasonTooLarge, "source is longer than 512 bytes"},
		{`{"type":"` + long + `"}`, 0, ReasonTooLarge, "type is longer than 512 bytes"},
		{`{` + pv + `,"id":"` + strings.Repeat(`\u00e9`, 257) + `"}`, 0, ReasonTooLarge, ""}, // 514 bytes decoded

		// malformed-json
		{``, 0, ReasonMalformedJSON, "empty value"},
		{" \n\t", 0, ReasonMalformedJSON, "empty value"},
		{`{`, 0, ReasonMalformedJSON, "event at byte 1"},
		{`}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,}`, 0, ReasonMalformedJSON, ""},
		{`{,` + pv + `}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `}}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `}{}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + ` "id":"a"}`, 0, ReasonMalformedJSON, ""},
		{`{"type" "page-view"}`, 0, ReasonMalformedJSON, ""},
		{`{"type"::"page-view"}`, 0, ReasonMalformedJSON, ""},
		{`{type:"page-view"}`, 0, ReasonMalformedJSON, ""},
		{`{'type':'page-view'}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,"x":NaN}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,"x":Infinity}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,"x":+1}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,"x":.5}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,"x":1.}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,"x":1e}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,"x":1e+}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,"x":-}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,"x":-a}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,"x":00}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,"x":0x10}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,"x":True}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,"x":nul}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,"x":nulll}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,"x":[1,]}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,"x":[,1]}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,"x":[1 2]}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,"x":[1}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,"x":{"a"}}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,"x":{1:2}}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,"x":"\x"}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,"x":"\u12"}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,"x":"\u12G4"}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,"x":"\U00e9"}`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,"x":"\'"}`, 0, ReasonMalformedJSON, ""},
		{"{" + pv + ",\"x\":\"a\x00\"}", 0, ReasonMalformedJSON, ""},
		{"{" + pv + ",\"x\":\"a\x1f\"}", 0, ReasonMalformedJSON, ""},
		{"{" + pv + ",\"x\":\"a\nb\"}", 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,"x":"abc`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,"x":"abc\`, 0, ReasonMalformedJSON, ""},
		{`{` + pv + `,"x":"abc\u00`, 0, ReasonMalformedJSON, ""},
		{"\xef\xbb\xbf{" + pv + "}", 0, ReasonMalformedJSON, "event at byte 0"},
		{"{" + pv + "}\x00", 0, ReasonMalformedJSON, ""},
		{"{" + pv + ",\"x\":1\xff}", 0, ReasonMalformedJSON, ""},
		{`{"type":}`, 0, ReasonMalformedJSON, "type at byte 8"},
		{`{"type":`, 0, ReasonMalformedJSON, "type at byte 8"},
		{`{"time":}`, 0, ReasonMalformedJSON, ""},
		{`{"profile":,"type":"a"}`, 0, ReasonMalformedJSON, ""},
		{`{"properties":]}`, 0, ReasonMalformedJSON, ""},
		{`[1,2`, 0, ReasonMalformedJSON, ""},
		{`"abc`, 0, ReasonMalformedJSON, ""},
		{`tru`, 0, ReasonMalformedJSON, ""},
		{`1 2`, 0, ReasonMalformedJSON, ""},
		// syntax is reported before any schema error that came first
		{`{"type":42,}`, 0, ReasonMalformedJSON, ""},
		{`{"type":42`, 0, ReasonMalformedJSON, ""},
		{`{"type":null,"x":tru}`, 0, ReasonMalformedJSON, ""},
		{`{"type":"a","time":"yesterday","x":}`, 0, ReasonMalformedJSON, ""},
		{`{"type":"a","time":1e99`, 0, ReasonMalformedJSON, ""},
		{`{"type":"a","profile":[1],"x":[}`, 0, ReasonMalformedJSON, ""},
		{`{"type":"a","profile":[1,}`, 0, ReasonMalformedJSON, ""},
		{`{"type":"a","tags":[1,"a",]}`, 0, ReasonMalformedJSON, ""},
		{`{"type":"a","options":{"ephemeral":"yes",}}`, 0, ReasonMalformedJSON, "options at byte 41"},
		{`{"type":"a","id":"` + long + `"`, 0, ReasonMalformedJSON, ""},
		{`{"type":"a","properties":"x",`, 0, ReasonMalformedJSON, ""},

		// too-deep
		{`{` + pv + `,"x":` + deep(64) + `}`, 0, ReasonTooDeep, "event nests deeper than 64"},
		{`{` + pv + `,"properties":` + strings.Repeat(`{"a":`, 64) + `1` + strings.Repeat("}", 64) + `}`, 0, ReasonTooDeep, "properties nests deeper than 64"},
		{`{` + pv + `,"context":{"page":` + deep(63) + `}}`, 0, ReasonTooDeep, ""},
		{`{` + pv + `,"x":` + strings.Repeat("[", 1000), 0, ReasonTooDeep, ""},
		{deep(65), 0, ReasonTooDeep, ""},
		{`{"type":42,"x":` + deep(64) + `}`, 0, ReasonTooDeep, ""},

		// invalid-utf8
		{"{" + pv + ",\"id\":\"a\xffb\"}", 0, ReasonInvalidUTF8, "id has a string that is not valid UTF-8"},
		{"{\"type\":\"\xc3\"}", 0, ReasonInvalidUTF8, "type has a string that is not valid UTF-8"},
		{"{" + pv + ",\"k\xe9y\":1}", 0, ReasonInvalidUTF8, ""},                                          // the detail names the field before the key
		{"{" + pv + ",\"properties\":{\"a\":[\"\xc0\xaf\"]}}", 0, ReasonInvalidUTF8, ""},                 // overlong
		{"{" + pv + ",\"tags\":[\"\xed\xa0\x80\"]}", 0, ReasonInvalidUTF8, ""},                           // encoded surrogate
		{"{" + pv + ",\"context\":{\"page\":{\"url\":\"\xf4\x90\x80\x80\"}}}", 0, ReasonInvalidUTF8, ""}, // > U+10FFFF
		{"{" + pv + ",\"x\":\"\xe2\x82\"}", 0, ReasonInvalidUTF8, ""},                                    // truncated sequence
		{"{\"type\":42,\"x\":\"\xff\"}", 0, ReasonInvalidUTF8, ""},

		// missing-type
		{`{}`, 0, ReasonMissingType, "no type field"},
		{`{"profile":"p1","time":0}`, 0, ReasonMissingType, "no type field"},
		{`{"x":{"type":"page-view"}}`, 0, ReasonMissingType, "no type field"},
		{`{"Type":"page-view"}`, 0, ReasonMissingType, "no type field"},
		{`{"type":""}`, 0, ReasonMissingType, "type is empty"},
		{`{"type":" \t\n "}`, 0, ReasonMissingType, "type is empty"},
		{`{"type":"\n"}`, 0, ReasonMissingType, "type is empty"},
		{`{"type":null}`, 0, ReasonMissingType, "type is null"},
		{`{"type":"a","type":null}`, 0, ReasonMissingType, "type is null"},

		// wrong-field-type
		{`[1,2,3]`, 0, ReasonWrongFieldType, "event must be a JSON object"},
		{`"page-view"`, 0, ReasonWrongFieldType, "event must be a JSON object"},
		{` 42 `, 0, ReasonWrongFieldType, "event must be a JSON object"},
		{`null`, 0, ReasonWrongFieldType, "event must be a JSON object"},
		{`{"type":42}`, 0, ReasonWrongFieldType, "type must be a string"},
		{`{"type":["page-view"]}`, 0, ReasonWrongFieldType, "type must be a string"},
		{`{` + pv + `,"id":1}`, 0, ReasonWrongFieldType, "id must be a string"},
		{`{` + pv + `,"id":{"id":"a"}}`, 0, ReasonWrongFieldType, "id must be a string"},
		{`{` + pv + `,"profile":["p1"]}`, 0, ReasonWrongFieldType, `profile must be a string or an object {"id": ...}`},
		{`{` + pv + `,"session":true}`, 0, ReasonWrongFieldType, `session must be a string or an object {"id": ...}`},
		{`{` + pv + `,"source":{"id":1}}`, 0, ReasonWrongFieldType, "source must be a string"},
		{`{` + pv + `,"properties":[1]}`, 0, ReasonWrongFieldType, "properties must be an object"},
		{`{` + pv + `,"properties":"x"}`, 0, ReasonWrongFieldType, "properties must be an object"},
		{`{` + pv + `,"traits":0}`, 0, ReasonWrongFieldType, "traits must be an object"},
		{`{` + pv + `,"context":"web"}`, 0, ReasonWrongFieldType, "context must be an object"},
		{`{` + pv + `,"tags":"a"}`, 0, ReasonWrongFieldType, "tags must be an array of strings"},
		{`{` + pv + `,"tags":["a",1]}`, 0, ReasonWrongFieldType, "tags must be an array of strings"},
		{`{` + pv + `,"tags":[null]}`, 0, ReasonWrongFieldType, "tags must be an array of strings"},
		{`{` + pv + `,"tags":{}}`, 0, ReasonWrongFieldType, "tags must be an array of strings"},
		{`{` + pv + `,"options":true}`, 0, ReasonWrongFieldType, "options must be an object"},
		{`{` + pv + `,"options":{"ephemeral":"yes"}}`, 0, ReasonWrongFieldType, "options.ephemeral must be a boolean"},
		{`{` + pv + `,"options":{"ephemeral":1}}`, 0, ReasonWrongFieldType, "options.ephemeral must be a boolean"},
		{`{` + pv + `,"time":true}`, 0, ReasonWrongFieldType, "time must be an RFC 3339 string or epoch milliseconds"},
		{`{` + pv + `,"time":{"ms":1}}`, 0, ReasonWrongFieldType, "time must be an RFC 3339 string or epoch milliseconds"},
		// the first schema error is reported
		{`{"type":42,"time":"bad"}`, 0, ReasonWrongFieldType, "type must be a string"},
		{`{"time":"bad","type":42}`, 0, ReasonInvalidTime, ""},
		{`{"profile":1,"type":"visit-ended"}`, 0, ReasonWrongFieldType, ""},
		{`{"type":"a","time":"bad","time":0}`, 0, ReasonInvalidTime, ""},

		// invalid-time
		{`{` + pv + `,"time":"yesterday"}`, 0, ReasonInvalidTime, "time is not an RFC 3339 timestamp"},
		{`{` + pv + `,"time":"2026-02-30T00:00:00Z"}`, 0, ReasonInvalidTime, "time is not an RFC 3339 timestamp"},
		{`{` + pv + `,"time":1e12}`, 0, ReasonInvalidTime, "time epoch milliseconds out of range"},
		{`{` + pv + `,"time":-5}`, 0, ReasonInvalidTime, "time epoch milliseconds out of range"},
		{`{` + pv + `,"time":253402300800000}`, 0, ReasonInvalidTime, "time epoch milliseconds out of range"},

		// missing-time
		{`{` + pv + `}`, NoTimestamp, ReasonMissingTime, "no time field and no record timestamp"},
		{`{` + pv + `,"time":null}`, NoTimestamp, ReasonMissingTime, ""},
		{`{` + pv + `}`, -1, ReasonMissingTime, ""},
		{`{` + pv + `}`, maxTime + 1, ReasonMissingTime, ""},

		// system-event-type
		{`{"type":"profile-created"}`, 0, ReasonSystemEventType, "profile-created is emitted by dwell and not accepted from producers"},
		{`{"type":"session-opened"}`, 0, ReasonSystemEventType, ""},
		{`{"type":" Visit Started "}`, 0, ReasonSystemEventType, "visit-started is emitted by dwell and not accepted from producers"},
		{`{"type":"VISIT-ENDED"}`, 0, ReasonSystemEventType, ""},
		{`{"type":"session\u0020closed"}`, 0, ReasonSystemEventType, ""},
	}
	d := testDecoder()
	for _, tt := range tests {
		ts := tt.ts
		if ts == 0 {
			ts = ts0
		}
		name := tt.in
		if len(name) > 80 {
			name = name[:80] + "..."
		}
		rec := &Record{Value: []byte(tt.in), Timestamp: ts}
		var ev Event
		err := d.Decode(rec, &ev)
		if err == nil {
			t.Errorf("Decode(%q) accepted, want %s", name, tt.reason)
			continue
		}
		if err.Reason != tt.reason || tt.detail != "" && err.Detail != tt.detail {
			t.Errorf("Decode(%q) = %s: %s, want %s: %s", name, err.Reason, err.Detail, tt.reason, tt.detail)
		}
		if !slices.Contains(DecodeReasons(), err.Reason) {
			t.Errorf("Decode(%q): reason %q is not in DeadReasons", name, err.Reason)
		}
		if err.Error() != string(err.Reason)+": "+err.Detail {
			t.Errorf("Error() = %q", err.Error())
		}
	}
}

// TestDecodeLimits checks that the limits come from the config.
func TestDecodeLimits(t *testing.T) {
	d := NewDecoder((&Config{MaxEventBytes: 64, MaxDepth: 2, MaxIDBytes: 3}).EnsureDefaults())
	for _, tt := range []struct {
		in     string
		reason Reason
	}{
		{`{"type":"abc","id":"abc","x":[1]}`, ""},
		{`{"type":"abcd"}`, ReasonTooLarge},
		{`{"type":"a","id":"\u00e9\u00e9"}`, ReasonTooLarge},
		{`{"type":"a","x":[[1]]}`, ReasonTooDeep},
		{`{"type":"a","properties":{"a":{}}}`, ReasonTooDeep},
		{`{"type":"a","x":"` + strings.Repeat("y", 64-len(`{"type":"a","x":""}`)) + `"}`, ""},
		{`{"type":"a","x":"` + strings.Repeat("y", 65-len(`{"type":"a","x":""}`)) + `"}`, ReasonTooLarge},
	} {
		var ev Event
		err := d.Decode(&Record{Value: []byte(tt.in), Timestamp: ts0}, &ev)
		var got Reason
		if err != nil {
			got = err.Reason
		}
		if got != tt.reason {
			t.Errorf("Decode(%s) = %v, want %q", tt.in, err, tt.reason)
		}
	}
	// The skew comes from the config too.
	d = NewDecoder((&Config{MaxFutureSkew: time.Second}).EnsureDefaults())
	var ev Event
	if err := d.Decode(&Record{Value: []byte(`{"type":"a","time":1001}`), Timestamp: 0}, &ev); err != nil || !ev.TimeAdjusted || ev.Time != 0 {
		t.Errorf("skew 1s: %v %+v", err, ev)
	}
	if err := d.Decode(&Record{Value: []byte(`{"type":"a","time":1000}`), Timestamp: 0}, &ev); err != nil || ev.TimeAdjusted || ev.Time != 1000 {
		t.Errorf("skew 1s: %v %+v", err, ev)
	}
}

// TestDecodeViewsAndInterning checks that unescaped strings are views into the record value
// and that normalised types are interned, also for types beyond the intern table.
func TestDecodeViewsAndInterning(t *testing.T) {
	d := testDecoder()
	val := []byte(`{"type":"Page View","id":"e1","profile":"p1","properties":{"a":1}}`)
	var ev Event
	if err := d.Decode(&Record{Value: val, Timestamp: ts0}, &ev); err != nil {
		t.Fatal(err)
	}
	within := func(b []byte) bool {
		lo, at := uintptr(unsafe.Pointer(&val[0])), uintptr(unsafe.Pointer(unsafe.SliceData(b)))
		return len(b) > 0 && at >= lo && at+uintptr(len(b)) <= lo+uintptr(len(val))
	}
	if !within(ev.ID) || !within(ev.Profile) || !within(ev.Properties) {
		t.Errorf("fields are not views into the record value")
	}
	var ev2 Event
	if err := d.Decode(&Record{Value: []byte(`{"type":"page view"}`), Timestamp: ts0}, &ev2); err != nil {
		t.Fatal(err)
	}
	if ev.Type != "page-view" || ev2.Type != "page-view" || stringData(ev.Type) != stringData(ev2.Type) {
		t.Errorf("types %q and %q are not the same interned string", ev.Type, ev2.Type)
	}
	// The type must not alias the decoder's scratch buffer.
	if err := d.Decode(&Record{Value: []byte(`{"type":"click"}`), Timestamp: ts0}, &ev2); err != nil {
		t.Fatal(err)
	}
	if ev.Type != "page-view" {
		t.Errorf("type changed to %q after decoding another event", ev.Type)
	}
	// Beyond the intern table, types are still right.
	for i := range maxInternedTypes + 10 {
		in := fmt.Sprintf(`{"type":"T %d"}`, i)
		if err := d.Decode(&Record{Value: []byte(in), Timestamp: ts0}, &ev); err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("t-%d", i); ev.Type != want {
			t.Fatalf("type %q, want %q", ev.Type, want)
		}
	}
	if len(d.types) > maxInternedTypes {
		t.Errorf("intern table has %d entries", len(d.types))
	}
	keep := ev.Type
	if err := d.Decode(&Record{Value: []byte(`{"type":"T 999999"}`), Timestamp: ts0}, &ev); err != nil {
		t.Fatal(err)
	}
	if keep != fmt.Sprintf("t-%d", maxInternedTypes+9) {
		t.Errorf("uninterned type changed to %q", keep)
	}
}

func stringData(s string) *byte { return unsafe.StringData(s) }

// checkEventInvariants checks what must hold for every accepted event: its byte fields are
// valid UTF-8, its raw fields are valid JSON of their kind, its times are in range, and it
// re-encodes as valid JSON that says the same.
func checkEventInvariants(t testing.TB, in string, ev *Event) {
	t.Helper()
	for _, f := range []struct {
		name string
		b    []byte
	}{{"id", ev.ID}, {"profile", ev.Profile}, {"session", ev.Session}, {"source", ev.Source}, {"url", ev.URL}, {"device", ev.Device}} {
		if !utf8.Valid(f.b) {
			t.Fatalf("Decode(%q): %s %q is not valid UTF-8", in, f.name, f.b)
		}
	}
	if ev.Type == "" || !utf8.ValidString(ev.Type) || ev.Type != NormalizeType(ev.Type) {
		t.Fatalf("Decode(%q): bad type %q", in, ev.Type)
	}
	for _, f := range []struct {
		name string
		b    []byte
		open byte
	}{{"properties", ev.Properties, '{'}, {"context", ev.Context, '{'}, {"traits", ev.Traits, '{'}, {"tags", ev.Tags, '['}} {
		if f.b != nil && (!json.Valid(f.b) || f.b[0] != f.open) {
			t.Fatalf("Decode(%q): %s %q is not a valid JSON %c...", in, f.name, f.b, f.open)
		}
	}
	if ev.Tags != nil {
		var tags []string
		if err := json.Unmarshal(ev.Tags, &tags); err != nil {
			t.Fatalf("Decode(%q): tags %s: %v", in, ev.Tags, err)
		}
	}
	if ev.Time < 0 || ev.Time > maxTime {
		t.Fatalf("Decode(%q): time %d out of range", in, ev.Time)
	}
	if ev.TimeAdjusted && (ev.OriginalTime <= ev.Time || ev.OriginalTime > maxTime) {
		t.Fatalf("Decode(%q): adjusted time %d, original %d", in, ev.Time, ev.OriginalTime)
	}
	out := AppendJSON(nil, &Output{Kind: KindEvent, Event: ev, VisitID: []byte("00000000000000000000000000000000")})
	if !json.Valid(out) || !utf8.Valid(out) {
		t.Fatalf("Decode(%q) re-encodes as invalid JSON: %q", in, out)
	}
	var m map[string]any
	if err := unmarshalNumber(out, &m); err != nil {
		t.Fatalf("re-encoded %q: %v", out, err)
	}
	if m["type"] != ev.Type || m["time"] != string(AppendTime(nil, ev.Time)) || ev.ID != nil && m["id"] != string(ev.ID) {
		t.Fatalf("Decode(%q) re-encodes as %s", in, out)
	}
	for name, b := range map[string][]byte{"profile": ev.Profile, "session": ev.Session, "source": ev.Source} {
		if len(b) == 0 && m[name] != nil || len(b) > 0 && m[name] != string(b) {
			t.Fatalf("Decode(%q) re-encodes %s %q as %v", in, name, b, m[name])
		}
	}
}

// looseRFC3339 matches every form ParseTime documents.
var looseRFC3339 = regexp.MustCompile(`^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?$`)

// refParseTime is ParseTime's specification, built on time.Parse: it rewrites a timestamp in
// any form ParseTime documents into the one form time.Parse(time.RFC3339Nano) reads, and keeps
// ParseTime's stricter zone range (±23:59) and its range of times.
func refParseTime(s string) (int64, bool) {
	m := looseRFC3339.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	sec, frac, zone := m[6], "", "Z"
	if sec == "" {
		sec = "00"
	}
	if m[7] != "" {
		frac = "." + m[7]
	}
	if m[9] != "" {
		mm := m[11]
		if mm == "" {
			mm = "00"
		}
		if m[10] > "23" || mm > "59" {
			return 0, false
		}
		zone = m[9] + m[10] + ":" + mm
	}
	tm, err := time.Parse(time.RFC3339Nano, m[1]+"-"+m[2]+"-"+m[3]+"T"+m[4]+":"+m[5]+":"+sec+frac+zone)
	if err != nil {
		return 0, false
	}
	// UnixMilli floors (the nanoseconds are never negative), and so does ParseTime, which
	// drops fraction digits beyond the third.
	ms := tm.UnixMilli()
	if ms < 0 || ms > maxTime {
		return 0, false
	}
	return ms, true
}

// refEpoch is the specification of a numeric time: epoch milliseconds, fraction truncated, no
// exponent, not negative, at most maxTime.
func refEpoch(n json.Number) (int64, bool) {
	s := string(n)
	if strings.ContainsAny(s, "eE-") {
		return 0, false
	}
	ip, _, _ := strings.Cut(s, ".")
	v, err := strconv.ParseInt(ip, 10, 64)
	if err != nil || v > maxTime {
		return 0, false
	}
	return v, true
}

func unmarshalNumber(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("trailing data")
	}
	return nil
}

// refViolations lists every schema rule that the event v (decoded by encoding/json with
// UseNumber) breaks, for a record with timestamp ts. The decoder must reject with one of them,
// or accept when there are none. With duplicate keys the decoder checks every occurrence and
// encoding/json keeps the last, so it applies only to values without them.
func refViolations(v any, ts int64, maxID int) map[Reason]bool {
	bad := map[Reason]bool{}
	obj, ok := v.(map[string]any)
	if !ok {
		bad[ReasonWrongFieldType] = true
		return bad
	}
	id := func(x any) {
		switch x := x.(type) {
		case nil:
		case string:
			if len(x) > maxID {
				bad[ReasonTooLarge] = true
			}
		default:
			bad[ReasonWrongFieldType] = true
		}
	}
	id(obj["id"])
	switch x := obj["type"].(type) {
	case nil:
		bad[ReasonMissingType] = true
	case string:
		if len(x) > maxID {
			bad[ReasonTooLarge] = true
		} else if n := NormalizeType(x); n == "" {
			bad[ReasonMissingType] = true
		} else if _, sys := ParseSystemType(n); sys {
			bad[ReasonSystemEventType] = true
		}
	default:
		bad[ReasonWrongFieldType] = true
	}
	switch x := obj["time"].(type) {
	case nil:
		if ts < 0 || ts > maxTime {
			bad[ReasonMissingTime] = true
		}
	case string:
		if _, ok := refParseTime(x); !ok {
			bad[ReasonInvalidTime] = true
		}
	case json.Number:
		if _, ok := refEpoch(x); !ok {
			bad[ReasonInvalidTime] = true
		}
	default:
		bad[ReasonWrongFieldType] = true
	}
	for _, name := range []string{"profile", "session", "source"} {
		switch x := obj[name].(type) {
		case nil, string:
			id(x)
		case map[string]any:
			id(x["id"])
		default:
			bad[ReasonWrongFieldType] = true
		}
	}
	for _, name := range []string{"properties", "context", "traits", "options"} {
		switch obj[name].(type) {
		case nil, map[string]any:
		default:
			bad[ReasonWrongFieldType] = true
		}
	}
	switch x := obj["tags"].(type) {
	case nil:
	case []any:
		for _, e := range x {
			if _, ok := e.(string); !ok {
				bad[ReasonWrongFieldType] = true
			}
		}
	default:
		bad[ReasonWrongFieldType] = true
	}
	if o, ok := obj["options"].(map[string]any); ok {
		switch o["ephemeral"].(type) {
		case nil, bool:
		default:
			bad[ReasonWrongFieldType] = true
		}
	}
	return bad
}

// refDecode is what encoding/json extracts from an accepted value b: maps keep the last of
// duplicate keys, and json.RawMessage keeps a value's bytes exactly.
func refDecode(t testing.TB, b []byte, ts, skew int64) evView {
	t.Helper()
	var m map[string]any
	var raw map[string]json.RawMessage
	if err := unmarshalNumber(b, &m); err != nil {
		t.Fatalf("encoding/json rejects accepted %q: %v", b, err)
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("encoding/json rejects accepted %q: %v", b, err)
	}
	v := baseView()
	v.RecordTime = ts
	str := func(x any) string {
		if s, ok := x.(string); ok && s != "" {
			return s
		}
		return nilStr
	}
	ref := func(x any) string {
		if o, ok := x.(map[string]any); ok {
			return str(o["id"])
		}
		return str(x)
	}
	rawOf := func(name string) string {
		if r := raw[name]; len(r) > 0 && string(r) != "null" {
			return string(r)
		}
		return nilStr
	}
	v.ID = str(m["id"])
	v.Type = NormalizeType(m["type"].(string))
	v.Profile, v.Session, v.Source = ref(m["profile"]), ref(m["session"]), ref(m["source"])
	v.Properties, v.Context, v.Traits, v.Tags = rawOf("properties"), rawOf("context"), rawOf("traits"), rawOf("tags")
	ctx, _ := m["context"].(map[string]any)
	page, _ := ctx["page"].(map[string]any)
	if u, ok := page["url"].(string); ok {
		v.URL = u
	}
	switch dv := ctx["device"].(type) {
	case string:
		v.Device = dv
	case map[string]any:
		if s, ok := dv["type"].(string); ok {
			v.Device = s
		}
	}
	opts, _ := m["options"].(map[string]any)
	v.Ephemeral = opts["ephemeral"] == true

	var evTime int64
	have := false
	switch x := m["time"].(type) {
	case string:
		evTime, have = refParseTime(x)
	case json.Number:
		evTime, have = refEpoch(x)
	}
	rts := ts
	if rts < 0 || rts > maxTime {
		rts = NoTimestamp
	}
	switch {
	case !have:
		v.Time = rts
	case rts != NoTimestamp && evTime-skew > rts:
		v.Time, v.OriginalTime, v.TimeAdjusted = rts, evTime, true
	default:
		v.Time = evTime
	}
	return v
}

// jsonDepth is the deepest nesting of valid JSON b.
func jsonDepth(b []byte) int {
	d, m, inStr := 0, 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inStr {
			if c == '\\' {
				i++
			} else if c == '"' {
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case '[', '{':
			d++
			m = max(m, d)
		case ']', '}':
			d--
		}
	}
	return m
}

// hasDupKeys reports whether some object in valid JSON b has a key twice (after unescaping).
func hasDupKeys(b []byte) bool {
	type frame struct {
		keys      map[string]bool // nil for an array
		expectKey bool
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return false
		}
		if err != nil {
			return true // cannot tell: treat as duplicated, which only skips checks
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if dl, ok := tok.(json.Delim); ok && (dl == '}' || dl == ']') {
			stack = stack[:len(stack)-1]
			continue
		}
		if top != nil && top.keys != nil {
			if top.expectKey {
				k := tok.(string)
				if top.keys[k] {
					return true
				}
				top.keys[k] = true
				top.expectKey = false
				continue
			}
			top.expectKey = true
		}
		if dl, ok := tok.(json.Delim); ok {
			f := &frame{expectKey: true}
			if dl == '{' {
				f.keys = map[string]bool{}
			}
			stack = append(stack, f)
		}
	}
}

func isSyntaxReason(r Reason) bool {
	return r == ReasonMalformedJSON || r == ReasonInvalidUTF8 || r == ReasonTooDeep || r == ReasonTooLarge
}

// checkDecode decodes b and checks the result against encoding/json: syntax verdicts agree
// with json.Valid, schema verdicts with refViolations, and accepted events with refDecode. It
// returns the reason ("" when accepted).
func checkDecode(t testing.TB, d *Decoder, b []byte, ts int64) Reason {
	t.Helper()
	rec := &Record{Topic: "in", Partition: 3, Offset: 42, Value: b, Timestamp: ts}
	var ev Event
	err := d.Decode(rec, &ev)
	if err == ErrBatch {
		if !json.Valid(b) || !utf8.Valid(b) {
			t.Fatalf("Decode(%q) = a batch, but it is not valid JSON and UTF-8", b)
		}
		checkBatch(t, d, rec, &ev)
		return err.Reason
	}
	var reason Reason
	if err != nil {
		reason = err.Reason
		if !slices.Contains(DecodeReasons(), reason) || err.Detail == "" {
			t.Fatalf("Decode(%q) = %v: unknown reason or no detail", b, err)
		}
	}
	jv, uv := json.Valid(b), utf8.Valid(b)
	tooBig := len(b) > d.maxBytes
	switch {
	case !jv:
		if err == nil || !isSyntaxReason(reason) {
			t.Fatalf("Decode(%q) = %v, but json.Valid is false", b, err)
		}
	case !uv: // valid JSON with invalid UTF-8 in a string
		if reason != ReasonInvalidUTF8 && reason != ReasonTooDeep && !(tooBig && reason == ReasonTooLarge) {
			t.Fatalf("Decode(%q) = %v, want invalid-utf8", b, err)
		}
	default:
		if reason == ReasonMalformedJSON || reason == ReasonInvalidUTF8 {
			t.Fatalf("Decode(%q) = %v, but it is valid JSON and valid UTF-8", b, err)
		}
		if tooBig {
			if reason != ReasonTooLarge {
				t.Fatalf("Decode(%d bytes) = %v, want too-large", len(b), err)
			}
			break
		}
		deep := jsonDepth(b) > d.maxDepth
		if deep != (reason == ReasonTooDeep) {
			t.Fatalf("Decode(%q) = %v, but its depth is %d", b, err, jsonDepth(b))
		}
		if deep || hasDupKeys(b) {
			break
		}
		var v any
		if err := unmarshalNumber(b, &v); err != nil {
			t.Fatalf("encoding/json: %v", err)
		}
		want := refViolations(v, ts, d.maxID)
		if err == nil && len(want) > 0 {
			t.Fatalf("Decode(%q) accepted, want one of %v", b, want)
		}
		if err != nil && !want[reason] {
			t.Fatalf("Decode(%q) = %v, want one of %v", b, err, want)
		}
	}
	if err == nil {
		checkEventInvariants(t, string(b), &ev)
		if got, want := viewOf(&ev, rec), refDecode(t, b, ts, d.skew); got != want {
			t.Fatalf("Decode(%q)\n got %+v\nwant %+v", b, got, want)
		}
	}
	return reason
}

// evGen generates JSON-ish test inputs: events and mutations of them.
type evGen struct{ r *rand.Rand }

func newEvGen(seed uint64) *evGen { return &evGen{rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))} }

func (g *evGen) n(k int) int              { return g.r.IntN(k) }
func (g *evGen) p(x float64) bool         { return g.r.Float64() < x }
func (g *evGen) pick(ss ...string) string { return ss[g.n(len(ss))] }

func (g *evGen) ws(b []byte) []byte {
	for g.p(0.1) {
		b = append(b, " \t\n\r"[g.n(4)])
	}
	return b
}

var testRunes = []rune{'é', 'ß', 'Ж', '中', '😀', '\u2028', '\u00a0', '\u0085', '\ufeff', '\U0010ffff', '\ufffd', 'İ', 'ſ', '\u212a', '\u007f'}

// strBody appends up to max random characters of a JSON string: plain, escaped (lone surrogates
// too), and raw multi-byte UTF-8.
func (g *evGen) strBody(b []byte, max int) []byte {
	for range g.n(max + 1) {
		switch g.n(16) {
		case 0:
			b = append(b, g.pick(`\n`, `\"`, `\\`, `\/`, `\b`, `\f`, `\r`, `\t`)...)
		case 1:
			b = fmt.Appendf(b, `\u%04x`, g.n(0x10000))
		case 2:
			r1, r2 := utf16.EncodeRune(rune(0x10000 + g.n(0x100000)))
			b = fmt.Appendf(b, `\u%04X\u%04x`, r1, r2)
		case 3:
			b = utf8.AppendRune(b, testRunes[g.n(len(testRunes))])
		case 4:
			if r := rune(0x80 + g.n(0x10ff80)); utf8.ValidRune(r) {
				b = utf8.AppendRune(b, r)
			}
		case 5, 6:
			b = append(b, ' ')
		case 7:
			b = append(b, byte('A'+g.n(26)))
		default:
			b = append(b, "abcdefghijklmnopqrstuvwxyz0123456789-_.:/"[g.n(41)])
		}
	}
	return b
}

func (g *evGen) str(b []byte, max int) []byte {
	b = append(b, '"')
	b = g.strBody(b, max)
	return append(b, '"')
}

func (g *evGen) number(b []byte) []byte {
	switch g.n(6) {
	case 0:
		return append(b, g.pick("0", "-0", "1", "-1", "0.0", "-0.0e0")...)
	case 1:
		return strconv.AppendInt(b, g.r.Int64N(1<<53)-1<<52, 10)
	case 2:
		return fmt.Appendf(b, "%d.%d", g.n(1000), g.n(1000))
	case 3:
		return fmt.Appendf(b, "%d%s%s%d", g.n(10), g.pick("e", "E"), g.pick("", "+", "-"), g.n(400))
	case 4:
		return fmt.Appendf(b, "-%d.%03dE-%d", g.n(100), g.n(1000), g.n(20))
	default:
		return append(b, "123456789012345678901234567890.5e-7"...)
	}
}

// value appends a random JSON value.
func (g *evGen) value(b []byte, depth int) []byte {
	k := g.n(10)
	if depth >= 4 {
		k = g.n(7)
	}
	switch k {
	case 0:
		return append(b, "null"...)
	case 1:
		return append(b, "true"...)
	case 2:
		return append(b, "false"...)
	case 3, 4:
		return g.number(b)
	case 5, 6:
		return g.str(b, 8)
	case 7:
		return g.array(b, func(b []byte) []byte { return g.value(b, depth+1) })
	default:
		var ms []func([]byte) []byte
		for range g.n(4) {
			key := g.pick("id", "type", "url", "page", "device", "ephemeral", "a", "")
			if g.p(0.5) {
				key = string(g.strBody(nil, 4))
			}
			ms = append(ms, func(b []byte) []byte { return g.value(g.key(b, key), depth+1) })
		}
		return g.obj(b, ms...)
	}
}

func (g *evGen) array(b []byte, elem func([]byte) []byte) []byte {
	b = append(b, '[')
	b = g.ws(b)
	for i := range g.n(4) {
		if i > 0 {
			b = append(b, ',')
			b = g.ws(b)
		}
		b = elem(b)
		b = g.ws(b)
	}
	return append(b, ']')
}

func (g *evGen) obj(b []byte, members ...func([]byte) []byte) []byte {
	b = append(b, '{')
	b = g.ws(b)
	for i, m := range members {
		if i > 0 {
			b = append(b, ',')
			b = g.ws(b)
		}
		b = m(b)
		b = g.ws(b)
	}
	return append(b, '}')
}

// key appends "k": (k is a raw string body), sometimes with a letter escaped.
func (g *evGen) key(b []byte, k string) []byte {
	b = append(b, '"')
	if k != "" && k[0] < utf8.RuneSelf && k[0] != '\\' && k[0] != '"' && g.p(0.05) {
		b = fmt.Appendf(b, `\u%04x`, k[0])
		k = k[1:]
	}
	b = append(b, k...)
	b = append(b, '"')
	b = g.ws(b)
	b = append(b, ':')
	return g.ws(b)
}

// timeString returns ms as a timestamp in a random form ParseTime accepts, with sub-millisecond
// digits or without seconds now and then, and the instant it names in milliseconds.
func (g *evGen) timeString(ms int64) (string, int64) {
	sec, nanos := ms/1000, (ms%1000)*1e6+g.r.Int64N(1e6)
	zone, offMin := g.n(7), 0
	switch zone {
	case 3, 4:
		offMin = g.n(2*24*60-1) - (24*60 - 1)
	case 5:
		offMin = (g.n(47) - 23) * 60
	}
	tm := time.Unix(sec, 0).In(time.FixedZone("", offMin*60))
	if tm.Year() > 9999 {
		zone, offMin = 0, 0
		tm = time.Unix(sec, 0).UTC()
	}
	b := fmt.Appendf(nil, "%04d-%02d-%02d%s%02d:%02d", tm.Year(), tm.Month(), tm.Day(), g.pick("T", "T", "t", " "), tm.Hour(), tm.Minute())
	want := (sec - int64(tm.Second())) * 1000
	if g.p(0.9) {
		b = fmt.Appendf(b, ":%02d", tm.Second())
		want = sec * 1000
		if nd := g.n(11); nd > 0 {
			digits := fmt.Sprintf("%09d", nanos)
			if nd > 9 {
				digits += strconv.Itoa(g.n(1000))
			} else {
				digits = digits[:nd]
			}
			b = append(b, g.pick(".", ".", ",")...)
			b = append(b, digits...)
			f, _ := strconv.ParseInt((digits + "000")[:3], 10, 64)
			want += f
		}
	}
	sign, abs := byte('+'), offMin
	if offMin < 0 {
		sign, abs = '-', -offMin
	}
	switch zone {
	case 0:
		b = append(b, 'Z')
	case 1:
		b = append(b, 'z')
	case 2: // none: UTC
	case 3:
		b = fmt.Appendf(b, "%c%02d:%02d", sign, abs/60, abs%60)
	case 4:
		b = fmt.Appendf(b, "%c%02d%02d", sign, abs/60, abs%60)
	case 5:
		b = fmt.Appendf(b, "%c%02d", sign, abs/60)
	case 6:
		b = append(b, "-00:00"...)
	}
	return string(b), want
}

func (g *evGen) timeValue(b []byte) []byte {
	switch g.n(8) {
	case 0, 1, 2: // near ts0, so that the skew rule applies now and then
		s, _ := g.timeString(ts0 + g.r.Int64N(20*60000) - 10*60000)
		return strconv.AppendQuote(b, s)
	case 3:
		s, _ := g.timeString(g.r.Int64N(maxTime + 1))
		return strconv.AppendQuote(b, s)
	case 4:
		b = strconv.AppendInt(b, ts0+g.r.Int64N(20*60000)-10*60000, 10)
		if g.p(0.3) {
			b = fmt.Appendf(b, ".%d", g.n(1000))
		}
		return b
	case 5: // an almost-timestamp
		s, _ := g.timeString(g.r.Int64N(maxTime + 1))
		bs := []byte(s)
		bs[g.n(len(bs))] = "0123456789:-+.TZ x"[g.n(18)]
		return strconv.AppendQuote(b, string(bs))
	case 6:
		return strconv.AppendInt(b, g.r.Int64N(maxTime+maxTime/8), 10)
	default:
		return g.value(b, 1)
	}
}

var testTypes = []string{`"page-view"`, `"Page View"`, `"  Sign Up  "`, `"click"`, `"Café Ouvert"`, `"ÉTÉ"`, `"visit-ended"`,
	`"Session Opened"`, `""`, `"   "`, `"\tLogin\n"`, `"page\u0020view"`, `"PROFILE-CREATED"`, `"a\tb"`}

// field appends a member for one of the event's fields, mostly of the right type.
func (g *evGen) field(b []byte, name string) []byte {
	b = g.key(b, name)
	if g.p(0.04) {
		return g.value(b, 1)
	}
	if name != "type" && g.p(0.05) {
		return append(b, "null"...)
	}
	switch name {
	case "id":
		if g.p(0.02) {
			return fmt.Appendf(b, `"%s"`, strings.Repeat("i", 505+g.n(15)))
		}
		return g.str(b, 12)
	case "type":
		if g.p(0.6) {
			return append(b, testTypes[g.n(len(testTypes))]...)
		}
		return g.str(b, 10)
	case "time":
		return g.timeValue(b)
	case "profile", "session", "source":
		if g.p(0.5) {
			return g.str(b, 8)
		}
		var ms []func([]byte) []byte
		if g.p(0.9) {
			ms = append(ms, func(b []byte) []byte {
				b = g.key(b, "id")
				if g.p(0.1) {
					return g.value(b, 2)
				}
				return g.str(b, 8)
			})
		}
		for range g.n(3) {
			ms = append(ms, func(b []byte) []byte { return g.value(g.key(b, g.pick("x", "name", "id")), 2) })
		}
		return g.obj(b, ms...)
	case "properties", "traits":
		var ms []func([]byte) []byte
		for range g.n(4) {
			ms = append(ms, func(b []byte) []byte { return g.value(g.key(b, string(g.strBody(nil, 5))), 2) })
		}
		return g.obj(b, ms...)
	case "context":
		var ms []func([]byte) []byte
		for range g.n(4) {
			switch g.n(4) {
			case 0:
				ms = append(ms, func(b []byte) []byte {
					b = g.key(b, "page")
					if g.p(0.1) {
						return g.value(b, 2)
					}
					var pm []func([]byte) []byte
					for range g.n(3) {
						pm = append(pm, func(b []byte) []byte {
							b = g.key(b, g.pick("url", "url", "title"))
							if g.p(0.8) {
								return g.str(b, 10)
							}
							return g.value(b, 3)
						})
					}
					return g.obj(b, pm...)
				})
			case 1:
				ms = append(ms, func(b []byte) []byte {
					b = g.key(b, "device")
					switch g.n(3) {
					case 0:
						return g.str(b, 6)
					case 1:
						return g.obj(b, func(b []byte) []byte { return g.str(g.key(b, "type"), 6) },
							func(b []byte) []byte { return g.value(g.key(b, g.pick("os", "type")), 3) })
					}
					return g.value(b, 2)
				})
			default:
				ms = append(ms, func(b []byte) []byte { return g.value(g.key(b, g.pick("ip", "locale", "url", "type")), 2) })
			}
		}
		return g.obj(b, ms...)
	case "tags":
		return g.array(b, func(b []byte) []byte {
			if g.p(0.05) {
				return g.value(b, 2)
			}
			return g.str(b, 6)
		})
	case "options":
		var ms []func([]byte) []byte
		for range g.n(3) {
			ms = append(ms, func(b []byte) []byte {
				b = g.key(b, g.pick("ephemeral", "ephemeral", "other"))
				switch g.n(5) {
				case 0, 1:
					return append(b, "true"...)
				case 2:
					return append(b, "false"...)
				case 3:
					return append(b, "null"...)
				}
				return g.value(b, 2)
			})
		}
		return g.obj(b, ms...)
	default: // unknown members, deeply nested now and then
		if g.p(0.1) {
			k := 58 + g.n(12)
			b = append(b, strings.Repeat(g.pick("[", `{"a":`), k)...)
			b = g.value(b, 4)
			return append(b, strings.Repeat(g.pick("]", "}"), k)...) // not always balanced right
		}
		return g.value(b, 1)
	}
}

var eventFields = []string{"id", "type", "time", "profile", "session", "source", "properties", "context", "traits", "tags", "options", "x", "Type"}

// event appends a random event, valid JSON unless the deep nesting of an unknown member closes
// with the wrong brackets.
func (g *evGen) event() []byte {
	var names []string
	for _, f := range eventFields {
		if f == "type" && g.p(0.97) || g.p(0.5) {
			names = append(names, f)
		}
	}
	for g.p(0.1) {
		names = append(names, eventFields[g.n(len(eventFields))])
	}
	g.r.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	var ms []func([]byte) []byte
	for _, name := range names {
		ms = append(ms, func(b []byte) []byte { return g.field(b, name) })
	}
	b := g.ws(nil)
	if g.p(0.01) {
		b = g.value(b, 0)
	} else {
		b = g.obj(b, ms...)
	}
	return g.ws(b)
}

var (
	interestingBytes = []byte("{}[]:,\"\\ \t\nntfrulse0123456789-+.eEu\x00\x1f\x7f\x80\xbf\xc3\xe9\xed\xf0\xff")
	badUTF8          = []string{"\xff", "\xc0\xaf", "\xed\xa0\x80", "\xe2\x82", "\xf4\x90\x80\x80", "\x80", "\xc3", "\xef\xbb\xbf"}
	jsonTokens       = []string{"null", "true", `"x"`, "1", "{}", "[]", ",", ":", `"type":"x",`, "-", "1e5", `\u00e9`, `\ud83d`, `"`, `\`, "[[[", "}}"}
)

// mutate returns b with a few random changes.
func (g *evGen) mutate(b []byte) []byte {
	b = bytes.Clone(b)
	for range 1 + g.n(3) {
		switch g.n(10) {
		case 0:
			if len(b) > 0 {
				b[g.n(len(b))] = interestingBytes[g.n(len(interestingBytes))]
			}
		case 1:
			if len(b) > 0 {
				b[g.n(len(b))] = byte(g.n(256))
			}
		case 2:
			b = b[:g.n(len(b)+1)]
		case 3:
			ins := make([]byte, 1+g.n(4))
			for i := range ins {
				ins[i] = byte(g.n(256))
			}
			b = slices.Insert(b, g.n(len(b)+1), ins...)
		case 4:
			b = slices.Insert(b, g.n(len(b)+1), interestingBytes[g.n(len(interestingBytes))])
		case 5:
			if len(b) > 0 {
				i := g.n(len(b))
				b = slices.Delete(b, i, i+1+g.n(min(8, len(b)-i)))
			}
		case 6:
			if len(b) > 0 {
				i := g.n(len(b))
				dup := bytes.Clone(b[i : i+1+g.n(min(16, len(b)-i))])
				b = slices.Insert(b, g.n(len(b)+1), dup...)
			}
		case 7:
			k := 60 + g.n(10)
			b = slices.Insert(b, g.n(len(b)+1), []byte(strings.Repeat(g.pick("[", `{"a":`, `[{"":`), k))...)
		case 8:
			s := badUTF8[g.n(len(badUTF8))]
			if g.p(0.5) {
				s = string(testRunes[g.n(len(testRunes))])
			}
			b = slices.Insert(b, g.n(len(b)+1), []byte(s)...)
		default:
			b = slices.Insert(b, g.n(len(b)+1), []byte(jsonTokens[g.n(len(jsonTokens))])...)
		}
	}
	return b
}

// TestDecodeAgainstEncodingJSON decodes many generated events and mutations of them, and
// checks every verdict and every accepted event against encoding/json (see checkDecode).
func TestDecodeAgainstEncodingJSON(t *testing.T) {
	n := 24000
	if testing.Short() {
		n = 2400
	}
	d := testDecoder()
	counts := map[Reason]int{}
	valid := 0
	for seed := range uint64(4) {
		g := newEvGen(seed)
		for i := range n / 4 {
			b := g.event()
			if i%3 != 0 {
				b = g.mutate(b)
			}
			if json.Valid(b) {
				valid++
			}
			ts := ts0
			switch g.n(10) {
			case 0:
				ts = NoTimestamp
			case 1:
				ts = -1
			}
			r := checkDecode(t, d, b, ts)
			if r == "" {
				r = "accepted"
			}
			counts[r]++
		}
	}
	t.Logf("%d inputs, %d valid JSON: %v", n, valid, counts)
	// The generator must reach every verdict, and accept a good share.
	if counts["accepted"] < n/10 || valid < n/3 {
		t.Errorf("only %d accepted, %d valid JSON", counts["accepted"], valid)
	}
	for _, r := range DecodeReasons() {
		if counts[r] == 0 {
			t.Errorf("no input was rejected as %s", r)
		}
	}
}

// TestDecodeTwiceSame checks that a decoder's state (interned types, scratch buffer) does not
// change its results: a fresh decoder and a used one agree on every generated input.
func TestDecodeTwiceSame(t *testing.T) {
	used := testDecoder()
	g := newEvGen(99)
	for range 2000 {
		b := g.event()
		if g.p(0.3) {
			b = g.mutate(b)
		}
		rec := &Record{Value: b, Timestamp: ts0}
		var ev1, ev2 Event
		err1 := used.Decode(rec, &ev1)
		err2 := testDecoder().Decode(rec, &ev2)
		if fmt.Sprint(err1) != fmt.Sprint(err2) || viewOf(&ev1, rec) != viewOf(&ev2, rec) && err1 == nil {
			t.Fatalf("Decode(%q): used decoder %v %+v, fresh %v %+v", b, err1, viewOf(&ev1, rec), err2, viewOf(&ev2, rec))
		}
	}
}

func TestParseTimeAgainstTimeParse(t *testing.T) {
	g := newEvGen(7)
	n := 20000
	if testing.Short() {
		n = 2000
	}
	for range n {
		y := 1970 + g.n(8030)
		mo := time.Month(1 + g.n(12))
		d := 1 + g.n(time.Date(y, mo+1, 0, 0, 0, 0, 0, time.UTC).Day())
		h, mi, s := g.n(24), g.n(60), g.n(60)
		switch g.n(20) { // boundaries now and then
		case 0:
			y, mo, d, h, mi, s = 1970, 1, 1, 0, g.n(2), g.n(60)
		case 1:
			y, mo, d, h, mi, s = 9999, 12, 31, 23, 59-g.n(2), g.n(60)
		}
		frac := ""
		if nd := g.n(10); nd > 0 {
			frac = "." + fmt.Sprintf("%09d", g.n(1e9))[:nd]
		}
		zone := "Z"
		if g.p(0.7) {
			zone = fmt.Sprintf("%c%02d:%02d", "+-"[g.n(2)], g.n(24), g.n(60))
		}
		str := fmt.Sprintf("%04d-%02d-%02dT%02d:%02d:%02d%s%s", y, mo, d, h, mi, s, frac, zone)
		tp, err := time.Parse(time.RFC3339Nano, str)
		if err != nil {
			t.Fatalf("time.Parse(%q): %v", str, err)
		}
		// ParseTime keeps the fraction to the millisecond, truncated: toward the past, as
		// UnixMilli does (for any time, as its nanoseconds are never negative).
		want := tp.UnixMilli()
		inRange := want >= 0 && want <= maxTime
		got, ok := ParseTime([]byte(str))
		if ok != inRange || ok && got != want {
			t.Fatalf("ParseTime(%q) = %d, %v; time.Parse says %d (in range %v)", str, got, ok, want, inRange)
		}
		if ok && got != tp.Unix()*1000+int64(tp.Nanosecond()/1e6) {
			t.Fatalf("ParseTime(%q) = %d: not the fraction truncated", str, got)
		}
		// Every other form of the same instant parses the same.
		variants := []string{
			strings.Replace(str, "T", "t", 1),
			strings.Replace(str, "T", " ", 1),
			strings.Replace(str, ".", ",", 1),
		}
		if zone == "Z" {
			variants = append(variants, str[:len(str)-1]+"z", str[:len(str)-1])
		} else {
			variants = append(variants, str[:len(str)-3]+str[len(str)-2:])
			if strings.HasSuffix(zone, ":00") {
				variants = append(variants, str[:len(str)-3])
			}
		}
		if s == 0 && frac == "" {
			variants = append(variants, str[:16]+str[19:])
		}
		for _, v := range variants {
			if got2, ok2 := ParseTime([]byte(v)); ok2 != ok || got2 != got {
				t.Fatalf("ParseTime(%q) = %d, %v; ParseTime(%q) = %d, %v", v, got2, ok2, str, got, ok)
			}
			if ref, refOK := refParseTime(v); refOK != ok || ref != got {
				t.Fatalf("refParseTime(%q) = %d, %v; ParseTime = %d, %v", v, ref, refOK, got, ok)
			}
		}
	}
}

// TestParseTimeForms checks generated timestamps in every accepted form against the instant they
// were generated from.
func TestParseTimeForms(t *testing.T) {
	g := newEvGen(8)
	for range 10000 {
		var ms int64
		switch g.n(4) {
		case 0:
			ms = g.r.Int64N(2 * 86400000)
		case 1:
			ms = maxTime - g.r.Int64N(2*86400000)
		default:
			ms = g.r.Int64N(maxTime + 1)
		}
		s, want := g.timeString(ms)
		got, ok := ParseTime([]byte(s))
		if !ok || got != want {
			t.Fatalf("ParseTime(%q) = %d, %v, want %d", s, got, ok, want)
		}
		if ref, refOK := refParseTime(s); !refOK || ref != want {
			t.Fatalf("refParseTime(%q) = %d, %v, want %d", s, ref, refOK, want)
		}
	}
}

func TestParseTimeDates(t *testing.T) {
	valid := []string{
		"2024-02-29T00:00:00Z", "2000-02-29T23:59:59.999Z", "2400-02-29T12:00:00Z", "2023-02-28T00:00:00Z",
		"2023-12-31T23:59:59Z", "2023-04-30T00:00:00Z", "2023-01-31T00:00:00Z", "2023-03-31T00:00:00Z",
		"2023-05-31T00:00:00Z", "2023-06-30T00:00:00Z", "2023-07-31T00:00:00Z", "2023-08-31T00:00:00Z",
		"2023-09-30T00:00:00Z", "2023-10-31T00:00:00Z", "2023-11-30T00:00:00Z", "1970-01-01T00:00:00Z",
		"9999-12-31T23:59:59.999Z", "1972-02-29T00:00:00Z", "9996-02-29T00:00:00Z",
		"1969-12-31T23:00:00-01:00", "1969-12-31T23:59:59.999-00:01", "0000-01-01T00:00:00Z", // the last is before 1970
	}
	invalid := []string{
		"2100-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "2024-02-30T00:00:00Z",
		"2024-04-31T00:00:00Z", "2024-06-31T00:00:00Z", "2024-09-31T00:00:00Z", "2024-11-31T00:00:00Z",
		"2024-01-32T00:00:00Z", "2024-13-01T00:00:00Z", "2024-00-10T00:00:00Z", "2024-01-00T00:00:00Z",
		"2024-01-01T24:00:00Z", "2024-01-01T23:60:00Z", "2024-01-01T23:59:60Z", "2024-01-01T99:00:00Z",
		"1969-12-31T23:59:59.999Z", "1970-01-01T00:00:00+00:01", "10000-01-01T00:00:00Z",
		"9999-12-31T23:59:59.999-00:01", "0000-01-01T00:00:00Z", "2024-01-01T00:00:00+24:00",
		"2024-01-01T00:00:00-00:60", "２０２４-01-01T00:00:00Z",
	}
	for _, s := range valid {
		want, refOK := refParseTime(s)
		got, ok := ParseTime([]byte(s))
		if s == "0000-01-01T00:00:00Z" {
			continue // a valid date, but before 1970: checked below
		}
		if !ok || !refOK || got != want {
			t.Errorf("ParseTime(%q) = %d, %v; want %d, %v", s, got, ok, want, refOK)
		}
	}
	for _, s := range invalid {
		if got, ok := ParseTime([]byte(s)); ok {
			t.Errorf("ParseTime(%q) = %d, want invalid", s, got)
		}
		if _, ok := refParseTime(s); ok {
			t.Errorf("refParseTime(%q) accepts", s)
		}
	}
	// Every day of every month of some leap and common years.
	for _, y := range []int{1970, 1999, 2000, 2023, 2024, 2100, 2400, 9999} {
		for mo := time.January; mo <= time.December; mo++ {
			for d := 1; d <= 32; d++ {
				s := fmt.Sprintf("%04d-%02d-%02dT12:34:56.789Z", y, mo, d)
				tm := time.Date(y, mo, d, 12, 34, 56, 789e6, time.UTC)
				exists := tm.Day() == d
				got, ok := ParseTime([]byte(s))
				if ok != exists || ok && got != tm.UnixMilli() {
					t.Errorf("ParseTime(%q) = %d, %v; want %d, %v", s, got, ok, tm.UnixMilli(), exists)
				}
			}
		}
	}
}

func TestAppendTime(t *testing.T) {
	g := newEvGen(9)
	edges := []int64{0, 1, 999, 1000, 59999, 60000, msPerDay - 1, msPerDay, ts0, maxTime, maxTime - 1,
		time.Date(2000, 2, 29, 23, 59, 59, 999e6, time.UTC).UnixMilli(),
		time.Date(2100, 3, 1, 0, 0, 0, 0, time.UTC).UnixMilli(),
		time.Date(2400, 12, 31, 0, 0, 0, 0, time.UTC).UnixMilli()}
	for i := range 50000 {
		var ms int64
		if i < len(edges) {
			ms = edges[i]
		} else {
			ms = g.r.Int64N(maxTime + 1)
		}
		b := AppendTime([]byte("x"), ms)
		want := time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
		if string(b) != "x"+want {
			t.Fatalf("AppendTime(%d) = %q, want %q", ms, b, "x"+want)
		}
		if got, ok := ParseTime(b[1:]); !ok || got != ms {
			t.Fatalf("ParseTime(AppendTime(%d)) = %d, %v", ms, got, ok)
		}
	}
}

func TestCivilDays(t *testing.T) {
	// daysFromCivil and civilFromDays are inverses over the whole range, and agree with time.
	for z := int64(-1); z <= maxTime/msPerDay; z += 1 + z/1000 {
		y, m, d := civilFromDays(z)
		if got := daysFromCivil(y, m, d); got != z {
			t.Fatalf("daysFromCivil(civilFromDays(%d) = %d-%d-%d) = %d", z, y, m, d, got)
		}
		tm := time.Unix(z*86400, 0).UTC()
		if int64(tm.Year()) != y || int64(tm.Month()) != m || int64(tm.Day()) != d {
			t.Fatalf("civilFromDays(%d) = %d-%d-%d, want %s", z, y, m, d, tm)
		}
	}
}

var sinkErr *DecodeError

// TestDecodeAllocs checks that decoding a typical event without escapes allocates nothing once
// its type has been seen.
func TestDecodeAllocs(t *testing.T) {
	d := testDecoder()
	for _, in := range []string{
		`{"id":"8c1f2e","type":"Page View","time":"2026-01-01T00:00:00.123+01:00","profile":"p-123","session":{"id":"s-456","n":2},` +
			`"source":"web","properties":{"path":"/a/b","n":-1.5e3,"ok":true,"list":[1,null,"x"]},` +
			`"context":{"page":{"url":"https://example.com/a","title":"A"},"device":{"type":"mobile","os":"ios"},"ip":"1.2.3.4"},` +
			`"traits":{"plan":"pro"},"tags":["a","b"],"options":{"ephemeral":false}}`,
		`{"type":"click","time":1767225600123,"profile":{"id":"p"},"context":{"device":"desktop"}}`,
		`{"type":"page-view"}`,
	} {
		rec := &Record{Topic: "in", Value: []byte(in), Timestamp: ts0}
		ev := new(Event)
		if err := d.Decode(rec, ev); err != nil {
			t.Fatal(err)
		}
		if allocs := testing.AllocsPerRun(200, func() { sinkErr = d.Decode(rec, ev) }); allocs != 0 || sinkErr != nil {
			t.Errorf("Decode(%s): %v allocations per run, err %v", in, allocs, sinkErr)
		}
	}
}

// checkBatch checks the elements of the batch d just decoded from rec into batch (see
// FuzzDecodeBatch).
func checkBatch(t testing.TB, d *Decoder, rec *Record, batch *Event) {
	t.Helper()
	b := *batch
	type result struct {
		raw string
		err *DecodeError
	}
	var first []result
	var ev Event
	d.Elements(rec, &b, &ev, func(index int, elem []byte, ev *Event, err *DecodeError) {
		first = append(first, result{string(elem), err})
		if err != nil {
			if !slices.Contains(DecodeReasons(), err.Reason) || !strings.HasPrefix(err.Detail, fmt.Sprintf("events[%d]: ", index)) {
				t.Fatalf("element %d of %q: %v: unknown reason or detail without its index", index, rec.Value, err)
			}
			return
		}
		if string(ev.Raw) != string(elem) || len(ev.ID) == 0 {
			t.Fatalf("element %d of %q: raw %q, id %q", index, rec.Value, ev.Raw, ev.ID)
		}
		checkEventInvariants(t, string(elem), ev)
		again := &Record{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, Value: ev.Raw, Timestamp: rec.Timestamp}
		var ev2 Event
		if err := d.Decode(again, &ev2); err != nil {
			t.Fatalf("element %d of %q: %q does not decode on its own: %v", index, rec.Value, ev.Raw, err)
		}
		if got, want := viewOf(&ev2, again), viewOf(ev, again); got != want {
			t.Fatalf("element %d of %q decoded again\n got %+v\nwant %+v", index, rec.Value, got, want)
		}
	})
	if err := d.Decode(rec, &b); err != ErrBatch {
		t.Fatalf("%q: a batch once, then %v", rec.Value, err)
	}
	i := 0
	d.Elements(rec, &b, &ev, func(index int, elem []byte, _ *Event, err *DecodeError) {
		if i >= len(first) || first[i].raw != string(elem) || (first[i].err == nil) != (err == nil) {
			t.Fatalf("%q: element %d differs between two runs", rec.Value, index)
		}
		i++
	})
	if i != len(first) {
		t.Fatalf("%q: %d elements, then %d", rec.Value, len(first), i)
	}
}
