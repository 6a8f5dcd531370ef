// What Python hands the launchers (crfiqa_kernels._C.Matrix / Vector) and the element-type tables
// behind the dtype codes of params.h. Plain data: no CUDA, no pybind11.
#pragma once

#include <cstdint>

#include "params.h"

namespace crfiqa {

// A row-major device matrix: address, dtype code, shape and strides in elements.
struct MatrixArg {
  int64_t ptr;
  int dtype;
  int64_t rows, cols, row_stride, col_stride;
};

// A contiguous device vector: address, dtype code, length.
struct VectorArg {
  int64_t ptr;
  int dtype;
  int64_t length;
};

inline const char* dtype_name(int dtype) {
  switch (dtype) {
    case kFloat32: return "float32";
    case kFloat16: return "float16";
    case kBFloat16: return "bfloat16";
    case kInt64: return "int64";
    default: return "unknown";
  }
}

// Bytes per element, 0 for an unknown code.
inline int64_t element_size(int dtype) {
  switch (dtype) {
    case kFloat32: return 4;
    case kFloat16:
    case kBFloat16: return 2;
    case kInt64: return 8;
    default: return 0;
  }
}

inline bool is_float_code(int dtype) { return dtype == kFloat32 || dtype == kFloat16 || dtype == kBFloat16; }

template <typename T>
T* vector_pointer(const VectorArg& v) {
  return reinterpret_cast<T*>(static_cast<uintptr_t>(v.ptr));
}

}  // namespace crfiqa
