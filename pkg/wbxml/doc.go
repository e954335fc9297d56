// Package wbxml is a bounded, allocation-free WBXML 1.1–1.3 codec
// (WAP-192-WBXML-20010725) plus the code-page tables that OMA DM 1.2.1
// uses (SyncML 1.2/1.1, MetInf, DevInf 1.2, DM DDF 1.2; PROTOCOL.md §8).
//
// The package is deliberately SyncML-agnostic: it knows about tags, code
// pages, strings and opaque data, never about what a SyncML element means.
// It is on the hot path of every device message, so the design follows from
// that:
//
//   - Decoder is a pull iterator (Next, or the faster NextInto) over the
//     input slice. Every Token it returns refers to bytes of the input (or,
//     for ENTITY only, a tiny decoder-owned buffer); nothing is copied or
//     allocated per token, and a Decoder can be recycled with Reset (e.g.
//     from a sync.Pool). Empty tags get a synthesized KindEnd so the stream
//     is always balanced; attributes, PIs and EXT_* tokens are validated and
//     skipped.
//   - Every length, offset and count read from the wire is checked against the
//     remaining input or a Limits value before it is used, so a hostile peer
//     can neither make the decoder read out of bounds nor make it allocate in
//     proportion to a declared size. Errors are *Error values carrying an
//     ErrKind and the byte offset.
//   - Encoder appends tokens to a caller-supplied buffer and switches code
//     pages lazily the way libwbxml does (PROTOCOL.md §8.1), so documents it
//     writes are byte-identical to libwbxml's "-n" output for the same token
//     kinds.
//
// The tree converters ToXML and FromXML (built on github.com/beevik/etree)
// are meant for embedded documents such as DevInf or DDF carried in OPAQUE
// data (PROTOCOL.md §8.6) and for tooling; they allocate freely and are not
// meant for the per-message SyncML path.
//
// Character sets: the decoder does not transcode. Text is returned in the
// document charset (Header.Charset, normally 106 = UTF-8); UTF-16/UTF-32
// documents are rejected because their strings cannot be NUL-terminated
// byte strings (WAP-192-WBXML §5.8.4.1). ToXML converts ISO-8859-1 (4) and
// US-ASCII (3) to UTF-8.
package wbxml
