#pragma once
// y = x Wᵀ + b on the GPU through cuBLAS (W row-major [out, in], as in a PyTorch state_dict),
// fp32 accumulation for every element type. The building block of the layers on CUDA.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

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

// x (rows × in), W (out × in) row-major, y (rows × out). In cuBLAS's column-major terms
// y (out × rows) = Wᵀ(out × in) · x (in × rows), with W seen as (in × out).
template <class T>
void linear(const CublasHandle& handle, cudaStream_t stream, const T* x, index_t rows, index_t in_features,
            const T* weight, const T* bias, index_t out_features, T* y) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>,
                "lsattn: the CUDA backend takes float, __half or __nv_bfloat16");
  if (rows == 0) return;
  CublasHandle::check(cublasSetStream(handle.get(), stream), "cublasSetStream");
  const float one = 1.0f, zero = 0.0f;
  CublasHandle::check(cublasGemmEx(handle.get(), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(out_features),
                                   static_cast<int>(rows), static_cast<int>(in_features), &one, weight, cuda_type<T>(),
                                   static_cast<int>(in_features), x, cuda_type<T>(), static_cast<int>(in_features), &zero,
                                   y, cuda_type<T>(), static_cast<int>(out_features), CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT),
                      "cublasGemmEx");
  if (bias != nullptr) {
    add_bias<<<256, 256, 0, stream>>>(y, bias, rows, out_features);
    check(cudaGetLastError(), "kernel launch");
  }
}

}  // namespace cuda_detail
}  // namespace lsattn
