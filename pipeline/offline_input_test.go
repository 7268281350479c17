package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/dwellhq/dwell/operators"
)

// TestLineReaderMatchesSplit checks the bounded line reader against a plain split on random
// input: line lengths around the read buffer and the cap, \r\n and \n endings, blank lines, a
// last line with or without a newline. Lines over the cap keep their first max bytes and their
// full length.
func TestLineReaderMatchesSplit(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	const max, bufSize = 40, 16
	for iter := range 300 {
		var in bytes.Buffer
		n := rng.IntN(12)
		for i := range n {
			size := rng.IntN(3 * max)
			for range size {
				in.WriteByte("ab {}\r \t"[rng.IntN(8)])
			}
			if i < n-1 || rng.IntN(2) == 0 {
				if rng.IntN(3) == 0 {
					in.WriteString("\r\n")
				} else {
					in.WriteByte('\n')
				}
			}
		}
		input := in.String()
		lr := &lineReader{br: bufio.NewReaderSize(strings.NewReader(input), bufSize), max: max}
		want := strings.Split(input, "\n")
		if strings.HasSuffix(input, "\n") || input == "" {
			want = want[:len(want)-1] // the reader's last call returns an empty line with EOF
			want = append(want, "")
		}
		for i, w := range want {
			w = strings.TrimSuffix(w, "\r")
			l, err := lr.next()
			if last := i == len(want)-1; last != errors.Is(err, io.EOF) || (err != nil && !errors.Is(err, io.EOF)) {
				t.Fatalf("iteration %d line %d of %d: err %v", iter, i, len(want), err)
			}
			keep := w
			if len(w) > max {
				keep = w[:max]
			}
			if string(l.value) != keep || l.size != int64(len(w)) || l.blank != (strings.TrimSpace(w) == "") {
				t.Fatalf("iteration %d line %d: got %q (size %d, blank %v), want %q (size %d)\ninput %q",
					iter, i, l.value, l.size, l.blank, keep, len(w), input)
			}
			if l.cut() != (len(w) > max) {
				t.Fatalf("iteration %d line %d: cut %v for a line of %d bytes", iter, i, l.cut(), len(w))
			}
		}
	}
}

// TestOfflineLongLine feeds a line of 16 MiB between ordinary ones: it is dead-lettered
// too-large with its first MaxEventBytes bytes and a detail that says so, the lines after it
// keep their numbers, and reading it allocates far less than the line (the whole line used to
// be buffered before its size was checked).
func TestOfflineLongLine(t *testing.T) {
	const size = 16 << 20
	long := bytes.Repeat([]byte("x"), size)
	copy(long, `{"type":"a","profile":"p","time":0,"pad":"`)
	input := bytes.Join([][]byte{
		[]byte(`{"id":"e0","type":"a","profile":"p","session":"s","time":0}`),
		long,
		[]byte("not json"),
		[]byte(`{"id":"e3","type":"a","profile":"p","session":"s","time":1000}`),
	}, []byte("\n"))

	run := func(in []byte) (OfflineSummary, string, uint64) {
		var dead bytes.Buffer
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		sum, err := RunOffline(context.Background(), OfflineConfig{}, bytes.NewReader(in), OfflineOutputs{Dead: &dead})
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatal(err)
		}
		return sum, dead.String(), after.TotalAlloc - before.TotalAlloc
	}
	sum, dead, allocated := run(input)
	if sum.Lines != 4 || sum.Totals.Events != 2 || sum.Totals.DeadByReason[operators.ReasonTooLarge] != 1 || sum.Totals.Dead != 2 {
		t.Fatalf("lines %d events %d dead %v; want 4 lines, 2 events, 1 too-large and 1 malformed", sum.Lines, sum.Totals.Events, sum.Totals.DeadByReason)
	}
	lines := strings.Split(strings.TrimSpace(dead), "\n")
	var tooLarge, malformed struct {
		Reason, Detail, Value string
		Offset                int64
	}
	if len(lines) != 2 || json.Unmarshal([]byte(lines[0]), &tooLarge) != nil || json.Unmarshal([]byte(lines[1]), &malformed) != nil {
		t.Fatalf("dead letters: %.300s", dead)
	}
	if tooLarge.Reason != "too-large" || tooLarge.Offset != 1 || tooLarge.Detail != fmt.Sprintf("line of %d bytes cut to the first %d", size, 1<<20) ||
		tooLarge.Value != string(long[:1<<20]) {
		t.Fatalf("too-large dead letter: reason %s, offset %d, detail %q, %d bytes of value", tooLarge.Reason, tooLarge.Offset, tooLarge.Detail, len(tooLarge.Value))
	}
	if malformed.Reason != "malformed-json" || malformed.Offset != 2 {
		t.Fatalf("the line after the long one: %s", lines[1])
	}
	// The same run with a short line in its place allocates what a run costs; the long line
	// may add its kept start, the dead letter (a JSON string of that start) and their buffers
	// growing, but nothing in proportion to its 16 MiB.
	short := bytes.Replace(input, long, []byte("x"), 1)
	_, _, base := run(short)
	if extra := int64(allocated) - int64(base); extra > 8<<20 {
		t.Fatalf("a %d-byte line cost %d bytes of allocation (a run without it %d)", size, extra, base)
	}
	t.Logf("allocated %d bytes with the long line, %d without", allocated, base)
}
