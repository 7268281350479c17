package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
)

// Reading dwell process's input: lines of bounded size, from a reader that may block.

// lineBufferBytes is the read buffer of the input. Lines longer than it are collected in a
// buffer of their own, up to the largest line kept whole (MaxEventBytes).
const lineBufferBytes = 64 << 10

// lineReader reads lines and keeps at most max bytes of each: a longer line is read to its end
// and counted, but only its first max bytes are kept. So memory stays within max plus the read
// buffer whatever the input holds, and line numbers stay right.
type lineReader struct {
	br   *bufio.Reader
	max  int
	long []byte // the kept start of a line longer than the read buffer
}

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, lineBufferBytes), max: max}
}

// line is one input line, without its line ending (\n, \r\n).
type line struct {
	// value is the line, or its first max bytes when it is longer (size > len(value)). A whole
	// line has memory of its own (events wait in the reorder buffer while later lines are read);
	// a cut one is valid until the next call.
	value []byte
	size  int64 // the line's length
	blank bool  // nothing but white space
}

func (l *line) cut() bool { return l.size > int64(len(l.value)) }

// next reads the next line. Its error is io.EOF after the last line (returned with it when the
// input does not end with a newline), or the reader's.
func (lr *lineReader) next() (line, error) {
	chunk, err := lr.br.ReadSlice('\n')
	if !errors.Is(err, bufio.ErrBufferFull) {
		// The common case: the line is in the buffer.
		v := trimEOL(chunk)
		if len(v) <= lr.max {
			return line{value: bytes.Clone(v), size: int64(len(v)), blank: len(bytes.TrimSpace(v)) == 0}, err
		}
	}
	// A long line: keep max+2 bytes (enough to tell a line of max bytes and its \r\n from a
	// longer one), count the rest, and note its last two bytes for the line ending.
	keep := lr.max + 2
	lr.long = lr.long[:0]
	var size int64
	var tail [2]byte // the line's last two bytes, tail[1] the last
	blank := true
	for {
		size += int64(len(chunk))
		if room := keep - len(lr.long); room > 0 {
			lr.long = appendBounded(lr.long, chunk[:min(len(chunk), room)], keep)
		}
		if blank && len(bytes.TrimSpace(chunk)) > 0 {
			blank = false
		}
		switch len(chunk) {
		case 0:
		case 1:
			tail[0], tail[1] = tail[1], chunk[0]
		default:
			tail[0], tail[1] = chunk[len(chunk)-2], chunk[len(chunk)-1]
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			break
		}
		chunk, err = lr.br.ReadSlice('\n')
	}
	// The line ending, as trimEOL takes it off.
	if size > 0 && tail[1] == '\n' {
		size--
		tail[1] = tail[0]
	}
	if size > 0 && tail[1] == '\r' {
		size--
	}
	if size <= int64(lr.max) {
		return line{value: bytes.Clone(lr.long[:size]), size: size, blank: blank}, err
	}
	return line{value: lr.long[:lr.max], size: size, blank: blank}, err
}

// trimEOL takes the newline and then a carriage return off the end of b.
func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte{'\n'})
	return bytes.TrimSuffix(b, []byte{'\r'})
}

// appendBounded appends b to dst, growing it to at most limit bytes of capacity.
func appendBounded(dst, b []byte, limit int) []byte {
	if need := len(dst) + len(b); need > cap(dst) {
		n := min(max(2*cap(dst), need, 4096), limit)
		grown := make([]byte, len(dst), n)
		copy(grown, dst)
		dst = grown
	}
	return append(dst, b...)
}

// ctxReader reads r in a goroutine of its own, so that a cancelled run does not wait for a
// Read that blocks (standard input from an idle producer): Read returns ctx's error at once.
// close ends the goroutine once r's pending Read, if any, returns.
type ctxReader struct {
	ctx  context.Context
	reqs chan []byte
	res  chan readResult
	done chan struct{}
}

type readResult struct {
	n   int
	err error
}

func newCtxReader(ctx context.Context, r io.Reader) *ctxReader {
	c := &ctxReader{ctx: ctx, reqs: make(chan []byte), res: make(chan readResult, 1), done: make(chan struct{})}
	go func() {
		for {
			select {
			case p := <-c.reqs:
				n, err := r.Read(p)
				c.res <- readResult{n, err} // buffered: one request is outstanding at a time
			case <-c.done:
				return
			}
		}
	}()
	return c
}

// Read reads from r in the goroutine. After it returned ctx's error the reader must not be
// used again: the goroutine may still write into p.
func (c *ctxReader) Read(p []byte) (int, error) {
	select {
	case c.reqs <- p:
	case <-c.ctx.Done():
		return 0, c.ctx.Err()
	}
	select {
	case r := <-c.res:
		return r.n, r.err
	case <-c.ctx.Done():
		return 0, c.ctx.Err()
	}
}

func (c *ctxReader) close() { close(c.done) }
