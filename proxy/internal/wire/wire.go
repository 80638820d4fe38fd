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

// maxLength is the largest length field accepted by Header (PostgreSQL's
// own allocation limit is just under 1 GiB).
const maxLength = 1 << 30

// maxEmptyReads is how many consecutive (0, nil) reads are tolerated before
// giving up with io.ErrNoProgress, as bufio does.
const maxEmptyReads = 100

// ErrFrameTooLarge is returned when a frame exceeds the reader's limit.
var ErrFrameTooLarge = errors.New("wire: message too large")

// ErrBadLength is returned for a frame whose length field is below 4.
var ErrBadLength = errors.New("wire: invalid message length")

// ErrBufferFull is returned by Fill when the buffer is full of unread bytes
// and want does not ask for a larger one: reading more is impossible.
var ErrBufferFull = errors.New("wire: buffer full")

// Reader buffers bytes read from one connection.
//
// Buffered bytes are buf[r:w]. Frames are examined in place; nothing is
// copied until they are written out.
type Reader struct {
	rd   io.Reader
	buf  []byte
	r, w int
	// base is the buffer of the configured size. buf is base except while
	// a frame larger than base is being assembled; Fill and Reset go back
	// to it afterwards, so shrinking does not allocate.
	base []byte
	// err is a read error that came with data: it is reported by the next
	// read, once the data has been consumed.
	err error
}

// NewReader returns a Reader with a buffer of size bytes.
func NewReader(rd io.Reader, size int) *Reader {
	return NewReaderBuf(rd, make([]byte, size))
}

// NewReaderBuf returns a Reader using buf as its buffer.
func NewReaderBuf(rd io.Reader, buf []byte) *Reader {
	return &Reader{rd: rd, buf: buf, base: buf}
}

// Reset points the reader at a new source and drops buffered bytes.
func (r *Reader) Reset(rd io.Reader) {
	r.rd = rd
	r.r, r.w = 0, 0
	r.buf = r.base
	r.err = nil
}

// Detach takes the buffer away from an empty Reader (to lend it out while
// the connection is idle) and returns it; nil when bytes or an error are
// pending. The Reader must get a buffer back with Attach before the next
// Fill.
func (r *Reader) Detach() []byte {
	if r.w != r.r || r.err != nil || r.base == nil {
		return nil
	}
	b := r.base
	r.buf, r.base = nil, nil
	r.r, r.w = 0, 0
	return b
}

// Attach gives a Reader whose buffer was detached a new one.
func (r *Reader) Attach(buf []byte) {
	r.buf, r.base = buf, buf
	r.r, r.w = 0, 0
}

// Buf returns the underlying buffer (to give it back to a pool).
func (r *Reader) Buf() []byte { return r.buf }

// Buffered is the number of unread bytes.
func (r *Reader) Buffered() int { return r.w - r.r }

// Bytes returns the unread bytes; valid until the next Fill.
func (r *Reader) Bytes() []byte { return r.buf[r.r:r.w] }

// Discard marks n buffered bytes as consumed. It panics if n is negative or
// more than Buffered: that would corrupt the buffer indexes.
func (r *Reader) Discard(n int) {
	if n < 0 || n > r.w-r.r {
		panic(fmt.Sprintf("wire: Discard(%d) with %d bytes buffered", n, r.w-r.r))
	}
	r.r += n
}

// Fill reads at least once from the source, first moving unread bytes to
// the front of the buffer. If want exceeds the buffer, the buffer grows
// toward want (the caller has checked want against its limit) as bytes
// arrive: it doubles, up to want, each time it is full, so that a peer
// announcing a large frame and sending nothing more costs no memory. A
// buffer grown for a large frame goes back to the configured size once the
// unread bytes fit in it again and want does not need more.
//
// Fill returns nil when it read at least one byte. A read error that came
// with data is returned by the next Fill (or StreamBody).
func (r *Reader) Fill(want int) error {
	if r.r > 0 {
		n := copy(r.buf, r.buf[r.r:r.w])
		r.r, r.w = 0, n
	}
	switch {
	case want > len(r.buf) && r.w == len(r.buf):
		nb := make([]byte, min(want, 2*len(r.buf)))
		copy(nb, r.buf[:r.w])
		r.buf = nb
	case len(r.buf) > len(r.base) && want <= len(r.base) && r.w < len(r.base):
		// Shrink back after a large frame, keeping what is buffered.
		copy(r.base, r.buf[:r.w])
		r.buf = r.base
	}
	if r.w == len(r.buf) {
		return ErrBufferFull
	}
	n, err := r.read(r.buf[r.w:])
	r.w += n
	return err
}

// read reads once into p, reporting a pending error first, retrying reads
// that return neither data nor error, and keeping an error that came with
// data for the next call. It returns a nil error exactly when n > 0.
func (r *Reader) read(p []byte) (int, error) {
	if err := r.err; err != nil {
		r.err = nil
		return 0, err
	}
	for range maxEmptyReads {
		n, err := r.rd.Read(p)
		if n < 0 || n > len(p) {
			return 0, fmt.Errorf("wire: reader returned invalid count %d", n)
		}
		if n > 0 {
			r.err = err
			return n, nil
		}
		if err != nil {
			return 0, err
		}
	}
	return 0, io.ErrNoProgress
}

// Header returns the type and total size (header included) of the frame at
// offset off of the unread bytes, if its header is buffered. An offset
// outside the unread bytes reports ok == false.
func (r *Reader) Header(off int) (typ byte, total int, ok bool, err error) {
	if off < 0 || off > r.w-r.r {
		return 0, 0, false, nil
	}
	b := r.buf[r.r+off : r.w]
	if len(b) < HeaderLen {
		return 0, 0, false, nil
	}
	n := binary.BigEndian.Uint32(b[1:5])
	if n < 4 {
		return b[0], 0, true, ErrBadLength
	}
	if n > maxLength {
		return b[0], 0, true, ErrFrameTooLarge
	}
	return b[0], int(n) + 1, true, nil
}

// ReadFrame returns the next whole frame (header included), reading until
// it is buffered. Frames larger than max are refused with ErrFrameTooLarge
// before anything is buffered for them. The slice is valid until the next
// call on the reader.
//
// At a frame boundary, the end of the source is reported as io.EOF; inside
// a frame, as io.ErrUnexpectedEOF.
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
				f := r.buf[r.r : r.r+total : r.r+total]
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
// buffered part first, then the remainder straight from the source. Only
// the frame's bytes are read from the source; bytes of later frames that
// were already buffered stay buffered.
//
// If the source ends before the frame does, StreamBody returns
// io.ErrUnexpectedEOF.
func (r *Reader) StreamBody(dst io.Writer, total int) error {
	if total < 0 {
		return ErrBadLength
	}
	have := min(r.Buffered(), total)
	if have > 0 {
		if err := write(dst, r.buf[r.r:r.r+have]); err != nil {
			return err
		}
		r.r += have
	}
	left := total - have
	if left == 0 {
		return nil
	}
	// Everything buffered belonged to this frame and has been written.
	r.r, r.w = 0, 0
	if len(r.buf) == 0 {
		return io.ErrShortBuffer
	}
	for left > 0 {
		chunk := r.buf[:min(left, len(r.buf))]
		n, err := r.read(chunk)
		if err != nil {
			return unexpectedEOF(err)
		}
		if err := write(dst, chunk[:n]); err != nil {
			return err
		}
		left -= n
	}
	return nil
}

// write writes p to dst, turning a short write into an error.
func write(dst io.Writer, p []byte) error {
	n, err := dst.Write(p)
	if err == nil && n != len(p) {
		err = io.ErrShortWrite
	}
	return err
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
