package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// HeaderLen is the size of a frame header: a type byte and a 4-byte length
// that counts itself but not the type byte.
const HeaderLen = 5

// ErrFrameTooLarge is returned when a frame exceeds the reader's limit.
var ErrFrameTooLarge = errors.New("wire: message too large")

// ErrBadLength is returned for a frame whose length field is below 4.
var ErrBadLength = errors.New("wire: invalid message length")

// Reader buffers bytes read from one connection.
//
// Buffered bytes are buf[r:w]. Frames are examined in place; nothing is
// copied until they are written out.
type Reader struct {
	rd   io.Reader
	buf  []byte
	r, w int
	size int // the buffer size to return to after a large frame
}

// NewReader returns a Reader with a buffer of size bytes.
func NewReader(rd io.Reader, size int) *Reader {
	return &Reader{rd: rd, buf: make([]byte, size), size: size}
}

// NewReaderBuf returns a Reader using buf as its buffer.
func NewReaderBuf(rd io.Reader, buf []byte) *Reader {
	return &Reader{rd: rd, buf: buf, size: len(buf)}
}

// Reset points the reader at a new source and drops buffered bytes.
func (r *Reader) Reset(rd io.Reader) {
	r.rd = rd
	r.r, r.w = 0, 0
	if len(r.buf) != r.size {
		r.buf = make([]byte, r.size)
	}
}

// Buf returns the underlying buffer (to give it back to a pool).
func (r *Reader) Buf() []byte { return r.buf }

// Buffered is the number of unread bytes.
func (r *Reader) Buffered() int { return r.w - r.r }

// Bytes returns the unread bytes; valid until the next Fill.
func (r *Reader) Bytes() []byte { return r.buf[r.r:r.w] }

// Discard marks n buffered bytes as consumed.
func (r *Reader) Discard(n int) { r.r += n }

// Fill reads at least once from the source, first moving unread bytes to
// the front of the buffer. If want exceeds the buffer, it grows to want
// (the caller has checked want against its limit).
func (r *Reader) Fill(want int) error {
	if r.r > 0 {
		n := copy(r.buf, r.buf[r.r:r.w])
		r.r, r.w = 0, n
	}
	if want > len(r.buf) {
		nb := make([]byte, want)
		copy(nb, r.buf[:r.w])
		r.buf = nb
	} else if r.w == 0 && len(r.buf) > r.size {
		r.buf = make([]byte, r.size) // shrink back after a large frame
	}
	n, err := r.rd.Read(r.buf[r.w:])
	r.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// Header returns the type and total size (header included) of the frame at
// offset off of the unread bytes, if its header is buffered.
func (r *Reader) Header(off int) (typ byte, total int, ok bool, err error) {
	b := r.buf[r.r+off : r.w]
	if len(b) < HeaderLen {
		return 0, 0, false, nil
	}
	n := binary.BigEndian.Uint32(b[1:5])
	if n < 4 {
		return b[0], 0, true, ErrBadLength
	}
	if n > 1<<30 {
		return b[0], 0, true, ErrFrameTooLarge
	}
	return b[0], int(n) + 1, true, nil
}

// ReadFrame returns the next whole frame (header included), reading until
// it is buffered. Frames larger than max are refused with ErrFrameTooLarge
// before anything is buffered for them. The slice is valid until the next
// call on the reader.
func (r *Reader) ReadFrame(max int) ([]byte, error) {
	for {
		_, total, ok, err := r.Header(0)
		if err != nil {
			return nil, err
		}
		if ok {
			if total > max {
				return nil, fmt.Errorf("%w: %d bytes (limit %d)", ErrFrameTooLarge, total, max)
			}
			if r.Buffered() >= total {
				f := r.buf[r.r : r.r+total]
				r.r += total
				return f, nil
			}
			if err := r.Fill(total); err != nil {
				return nil, unexpectedEOF(err)
			}
			continue
		}
		if err := r.Fill(HeaderLen); err != nil {
			if r.Buffered() > 0 {
				return nil, unexpectedEOF(err)
			}
			return nil, err
		}
	}
}

// StreamBody writes the rest of a frame of total bytes whose header is at
// the start of the unread bytes and which does not fit in the buffer: the
// buffered part first, then the remainder straight from the source.
func (r *Reader) StreamBody(dst io.Writer, total int) error {
	have := r.Buffered()
	if have > total {
		have = total
	}
	if _, err := dst.Write(r.buf[r.r : r.r+have]); err != nil {
		return err
	}
	r.r += have
	left := total - have
	for left > 0 {
		r.r, r.w = 0, 0
		chunk := r.buf
		if left < len(chunk) {
			chunk = chunk[:left]
		}
		n, err := r.rd.Read(chunk)
		if n > 0 {
			if _, werr := dst.Write(chunk[:n]); werr != nil {
				return werr
			}
			left -= n
		}
		if err != nil && left > 0 {
			return unexpectedEOF(err)
		}
	}
	return nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
