"""A subset of BVLC ``caffe.proto`` built with the protobuf runtime, to *write* test files.

Independent of ``converters.wire``: the encoding here is done by Google's protobuf library, so a
decoder bug cannot cancel out against an encoder bug.  Field numbers from BVLC
``src/caffe/proto/caffe.proto`` (proto2).  ``packed`` chooses the encoding of the float arrays
(Caffe declares them packed; old writers and other tools may not pack them).
"""

from __future__ import annotations

import functools

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto
_OPT, _REP = F.LABEL_OPTIONAL, F.LABEL_REPEATED

_SCHEMA = {
    "BlobShape": [("dim", 1, _REP, F.TYPE_INT64, None, True)],
    "BlobProto": [
        ("shape", 7, _OPT, F.TYPE_MESSAGE, "BlobShape", None),
        ("data", 5, _REP, F.TYPE_FLOAT, None, "PACK"),
        ("diff", 6, _REP, F.TYPE_FLOAT, None, "PACK"),
        ("double_data", 8, _REP, F.TYPE_DOUBLE, None, "PACK"),
        ("num", 1, _OPT, F.TYPE_INT32, None, None),
        ("channels", 2, _OPT, F.TYPE_INT32, None, None),
        ("height", 3, _OPT, F.TYPE_INT32, None, None),
        ("width", 4, _OPT, F.TYPE_INT32, None, None),
    ],
    "ConvolutionParameter": [
        ("num_output", 1, _OPT, F.TYPE_UINT32, None, None),
        ("bias_term", 2, _OPT, F.TYPE_BOOL, None, None),
        ("pad", 3, _REP, F.TYPE_UINT32, None, None),
        ("kernel_size", 4, _REP, F.TYPE_UINT32, None, None),
        ("group", 5, _OPT, F.TYPE_UINT32, None, None),
        ("stride", 6, _REP, F.TYPE_UINT32, None, None),
    ],
    "PoolingParameter": [
        ("pool", 1, _OPT, F.TYPE_INT32, None, None),
        ("kernel_size", 2, _OPT, F.TYPE_UINT32, None, None),
        ("stride", 3, _OPT, F.TYPE_UINT32, None, None),
        ("round_mode", 13, _OPT, F.TYPE_INT32, None, None),
    ],
    "CropParameter": [
        ("axis", 1, _OPT, F.TYPE_INT32, None, None),
        ("offset", 2, _REP, F.TYPE_UINT32, None, None),
    ],
    "LayerParameter": [
        ("name", 1, _OPT, F.TYPE_STRING, None, None),
        ("type", 2, _OPT, F.TYPE_STRING, None, None),
        ("bottom", 3, _REP, F.TYPE_STRING, None, None),
        ("top", 4, _REP, F.TYPE_STRING, None, None),
        ("blobs", 7, _REP, F.TYPE_MESSAGE, "BlobProto", None),
        ("convolution_param", 106, _OPT, F.TYPE_MESSAGE, "ConvolutionParameter", None),
        ("pooling_param", 121, _OPT, F.TYPE_MESSAGE, "PoolingParameter", None),
        ("crop_param", 144, _OPT, F.TYPE_MESSAGE, "CropParameter", None),
        ("fork_extra", 5000, _OPT, F.TYPE_STRING, None, None),  # an unknown field, like a fork's
    ],
    "V1LayerParameter": [
        ("bottom", 2, _REP, F.TYPE_STRING, None, None),
        ("top", 3, _REP, F.TYPE_STRING, None, None),
        ("name", 4, _OPT, F.TYPE_STRING, None, None),
        ("type", 5, _OPT, F.TYPE_INT32, None, None),  # an enum on the wire: a varint
        ("blobs", 6, _REP, F.TYPE_MESSAGE, "BlobProto", None),
        ("convolution_param", 10, _OPT, F.TYPE_MESSAGE, "ConvolutionParameter", None),
        ("pooling_param", 19, _OPT, F.TYPE_MESSAGE, "PoolingParameter", None),
    ],
    "NetParameter": [
        ("name", 1, _OPT, F.TYPE_STRING, None, None),
        ("layers", 2, _REP, F.TYPE_MESSAGE, "V1LayerParameter", None),
        ("input", 3, _REP, F.TYPE_STRING, None, None),
        ("layer", 100, _REP, F.TYPE_MESSAGE, "LayerParameter", None),
    ],
}


@functools.lru_cache(maxsize=None)
def messages(packed: bool = True) -> dict:
    """Message classes of the schema subset; ``packed`` for the float/double arrays."""
    package = f"caffe_subset_{'packed' if packed else 'unpacked'}"
    fdp = descriptor_pb2.FileDescriptorProto(name=f"{package}.proto", package=package, syntax="proto2")
    for msg_name, spec in _SCHEMA.items():
        msg = fdp.message_type.add(name=msg_name)
        for name, number, label, ftype, type_name, pack in spec:
            fld = msg.field.add(name=name, number=number, label=label, type=ftype)
            if type_name:
                fld.type_name = f".{package}.{type_name}"
            if pack is True or (pack == "PACK" and packed):
                fld.options.packed = True
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
            for name in _SCHEMA}
