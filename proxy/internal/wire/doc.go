// Package wire reads PostgreSQL protocol frames from a connection without
// decoding them.
//
// A Reader keeps one buffer per direction. The relay looks at the 5-byte
// header of each buffered frame (type byte and length), decides what the
// frame means for the session, and forwards whole runs of complete frames
// with one write. Frames larger than the buffer are streamed through, so
// memory stays bounded whatever the size of a row or a COPY chunk.
//
//	conn ──read──▶ [ buf: |frame|frame|fra… ] ──one write──▶ peer
//	                 r ▲                 ▲ w
package wire
