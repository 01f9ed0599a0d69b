#pragma once
// y = x Wᵀ + b on the GPU through cuBLAS (W row-major [out, in], as in a PyTorch state_dict),
// fp32 accumulation for every element type. The building block of the layers on CUDA.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <limits>
#include <type_traits>

#include "lsattn/backend/cuda/kernels.cuh"
#include "lsattn/backend/cuda/runtime.cuh"

namespace lsattn {

// An owned cuBLAS handle (creating one is expensive: keep it for many calls).
class CublasHandle {
 public:
  CublasHandle() { check(cublasCreate(&handle_), "cublasCreate"); }
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;
  ~CublasHandle() { (void)cublasDestroy(handle_); }
  cublasHandle_t get() const { return handle_; }

  static void check(cublasStatus_t status, const char* what) {
    if (status != CUBLAS_STATUS_SUCCESS)
      throw error(detail::concat("lsattn: cuBLAS ", what, " failed: ", cublasGetStatusString(status)));
  }

 private:
  cublasHandle_t handle_ = nullptr;
};

namespace cuda_detail {

template <class T>
__global__ void add_bias(T* y, const T* bias, index_t rows, index_t features) {
  for (index_t i = blockIdx.x * blockDim.x + threadIdx.x; i < rows * features; i += gridDim.x * blockDim.x)
    y[i] = from_float<T>(to_float(y[i]) + to_float(bias[i % features]));
}

template <class T>
constexpr cudaDataType_t cuda_type() {
  if constexpr (std::is_same_v<T, float>) return CUDA_R_32F;
  else if constexpr (std::is_same_v<T, __half>) return CUDA_R_16F;
  else return CUDA_R_16BF;
}

// The most rows one cuBLAS call takes: its sizes are int. Larger inputs (B·L rows) run in
// slices; tests lower the limit to exercise the slicing.
inline index_t& max_gemm_rows() {
  static index_t rows = std::numeric_limits<int>::max();
  return rows;
}

// Feature counts go to cuBLAS as int: larger ones are refused by name (rows are sliced instead).
inline void require_cublas_features(index_t in_features, index_t out_features) {
  constexpr index_t int_max = std::numeric_limits<int>::max();
  require(in_features <= int_max && out_features <= int_max, "linear: in_features = ", in_features,
          " and out_features = ", out_features, " must each be at most ", int_max, " (cuBLAS sizes are int)");
}

// x (rows × in), W (out × in) row-major, y (rows × out). In cuBLAS's column-major terms
// y (out × rows) = Wᵀ(out × in) · x (in × rows), with W seen as (in × out).
template <class T>
void linear(const CublasHandle& handle, cudaStream_t stream, const T* x, index_t rows, index_t in_features,
            const T* weight, const T* bias, index_t out_features, T* y) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>,
                "lsattn: the CUDA backend takes float, __half or __nv_bfloat16");
  require_cublas_features(in_features, out_features);
  constexpr index_t int_max = std::numeric_limits<int>::max();
  if (rows == 0) return;
  CublasHandle::check(cublasSetStream(handle.get(), stream), "cublasSetStream");
  const float one = 1.0f, zero = 0.0f;
  const index_t slice = std::max<index_t>(1, std::min(max_gemm_rows(), int_max));
  for (index_t first = 0; first < rows; first += slice) {
    const index_t count = std::min(slice, rows - first);
    CublasHandle::check(cublasGemmEx(handle.get(), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(out_features),
                                     static_cast<int>(count), static_cast<int>(in_features), &one, weight,
                                     cuda_type<T>(), static_cast<int>(in_features), x + first * in_features,
                                     cuda_type<T>(), static_cast<int>(in_features), &zero, y + first * out_features,
                                     cuda_type<T>(), static_cast<int>(out_features), CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT),
                        "cublasGemmEx");
  }
  if (bias != nullptr) {
    add_bias<<<256, 256, 0, stream>>>(y, bias, rows, out_features);
    check(cudaGetLastError(), "kernel launch");
  }
}

}  // namespace cuda_detail
}  // namespace lsattn
