// The MPI calls the project needs, as plain C functions for bun:ffi (runtime/mpi.ts builds this file
// through the kernels' build cache against the MPI found on this machine, and loads it).
//
// Plain C entry points keep us independent of an MPI's ABI: Open MPI's handles are addresses of
// data symbols, MPICH's are integers; here the compiler resolves them from <mpi.h>. Every function
// returns an MPI error code (0 is MPI_SUCCESS) and records the MPI call that failed
// (ngp_mpi_failed_call): errors are returned, not fatal (MPI_ERRORS_RETURN on the communicators).
// Only the thread that called ngp_mpi_init calls MPI (MPI_THREAD_FUNNELED): the JS thread; OpenMP
// threads run inside kernels and never call MPI.

// The C API only: MPICH's and old Open MPIs' mpi.h otherwise pull in C++ bindings (another library).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#include <stdint.h>
#include <string.h>

static const char* failed_call = "";
static MPI_Comm node_comm = MPI_COMM_NULL;

#define CALL(expr)                 \
  do {                             \
    int rc_ = (expr);              \
    if (rc_ != MPI_SUCCESS) {      \
      failed_call = #expr;         \
      return rc_;                  \
    }                              \
  } while (0)

static MPI_Datatype small_type(int32_t type) { return type == 0 ? MPI_INT32_T : MPI_DOUBLE; }
static MPI_Op small_op(int32_t op) { return op == 0 ? MPI_SUM : op == 1 ? MPI_MAX : MPI_MIN; }

extern "C" {

/** The MPI call behind the last nonzero code returned. */
const char* ngp_mpi_failed_call(void) { return failed_call; }

/** MPI_Error_string of `code` into `out` (`capacity` bytes, NUL-terminated). */
void ngp_mpi_error_string(int32_t code, char* out, int32_t capacity) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) length = 0;
  text[length < MPI_MAX_ERROR_STRING ? length : MPI_MAX_ERROR_STRING - 1] = 0;
  strncpy(out, text, capacity - 1);
  out[capacity - 1] = 0;
}

/** MPI_Get_library_version into `out` (`capacity` bytes, NUL-terminated). */
void ngp_mpi_library_version(char* out, int32_t capacity) {
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  if (MPI_Get_library_version(text, &length) != MPI_SUCCESS) length = 0;
  text[length < MPI_MAX_LIBRARY_VERSION_STRING ? length : MPI_MAX_LIBRARY_VERSION_STRING - 1] = 0;
  strncpy(out, text, capacity - 1);
  out[capacity - 1] = 0;
}

/**
 * MPI_Init_thread(FUNNELED) unless already initialized; errors returned on MPI_COMM_WORLD and on
 * the ranks of this node. `out`: provided thread level, rank, size, local rank, local size.
 */
int32_t ngp_mpi_init(int32_t* out) {
  int initialized = 0, provided = MPI_THREAD_SINGLE;
  CALL(MPI_Initialized(&initialized));
  if (!initialized) CALL(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided));
  else CALL(MPI_Query_thread(&provided));
  CALL(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  int rank = 0, size = 0, local_rank = 0, local_size = 0;
  CALL(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  CALL(MPI_Comm_size(MPI_COMM_WORLD, &size));
  if (node_comm == MPI_COMM_NULL) {
    CALL(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node_comm));
    CALL(MPI_Comm_set_errhandler(node_comm, MPI_ERRORS_RETURN));
  }
  CALL(MPI_Comm_rank(node_comm, &local_rank));
  CALL(MPI_Comm_size(node_comm, &local_size));
  out[0] = provided;
  out[1] = rank;
  out[2] = size;
  out[3] = local_rank;
  out[4] = local_size;
  return MPI_SUCCESS;
}

/** In-place sum of `n` floats over all ranks, in pieces of at most `piece` (< 2^31) elements. */
int32_t ngp_mpi_allreduce_f32(float* data, int64_t n, int64_t piece) {
  for (int64_t start = 0; start < n; start += piece) {
    int count = (int)(n - start < piece ? n - start : piece);
    CALL(MPI_Allreduce(MPI_IN_PLACE, data + start, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
  }
  return MPI_SUCCESS;
}

/**
 * In-place bitwise or of `n` values over all ranks (MPI_BOR), in pieces of at most `piece` (< 2^31)
 * values: type 0 u32 (MPI_UINT32_T), 1 bytes (MPI_BYTE).
 */
int32_t ngp_mpi_allreduce_bor(void* data, int64_t n, int64_t piece, int32_t type) {
  MPI_Datatype t = type == 0 ? MPI_UINT32_T : MPI_BYTE;
  int64_t width = type == 0 ? 4 : 1;
  for (int64_t start = 0; start < n; start += piece) {
    int count = (int)(n - start < piece ? n - start : piece);
    CALL(MPI_Allreduce(MPI_IN_PLACE, (char*)data + start * width, count, t, MPI_BOR, MPI_COMM_WORLD));
  }
  return MPI_SUCCESS;
}

/**
 * Every rank's `count` u32 values into `out`, rank after rank (`counts[r]` from rank r, which every
 * rank passes alike; their sum below 2^31): MPI_Allgatherv.
 */
int32_t ngp_mpi_allgather_u32(const uint32_t* data, int32_t count, uint32_t* out, const int32_t* counts, int32_t size) {
  int* displs = new int[size];
  int at = 0;
  for (int r = 0; r < size; r++) displs[r] = at, at += counts[r];
  int rc = MPI_Allgatherv(data, count, MPI_UINT32_T, out, counts, displs, MPI_UINT32_T, MPI_COMM_WORLD);
  delete[] displs;
  if (rc != MPI_SUCCESS) failed_call = "MPI_Allgatherv(...)";
  return rc;
}

/** `n` bytes from rank `root` to every rank, in pieces of at most `piece` (< 2^31) bytes. */
int32_t ngp_mpi_bcast(uint8_t* data, int64_t n, int64_t piece, int32_t root) {
  for (int64_t start = 0; start < n; start += piece) {
    int count = (int)(n - start < piece ? n - start : piece);
    CALL(MPI_Bcast(data + start, count, MPI_BYTE, root, MPI_COMM_WORLD));
  }
  return MPI_SUCCESS;
}

/** In-place reduction of a small array: type 0 int32, 1 double; op 0 sum, 1 max, 2 min. */
int32_t ngp_mpi_allreduce_small(void* data, int32_t n, int32_t type, int32_t op) {
  CALL(MPI_Allreduce(MPI_IN_PLACE, data, n, small_type(type), small_op(op), MPI_COMM_WORLD));
  return MPI_SUCCESS;
}

int32_t ngp_mpi_barrier(void) {
  CALL(MPI_Barrier(MPI_COMM_WORLD));
  return MPI_SUCCESS;
}

static MPI_Request barrier_request = MPI_REQUEST_NULL;

/** Starts a barrier that ngp_mpi_test_barrier completes (one at a time): a rank waits without spinning. */
int32_t ngp_mpi_ibarrier(void) {
  CALL(MPI_Ibarrier(MPI_COMM_WORLD, &barrier_request));
  return MPI_SUCCESS;
}

/** `*done` = 1 once every rank has entered the barrier that ngp_mpi_ibarrier started. */
int32_t ngp_mpi_test_barrier(int32_t* done) {
  int flag = 0;
  CALL(MPI_Test(&barrier_request, &flag, MPI_STATUS_IGNORE));
  *done = flag;
  return MPI_SUCCESS;
}

/** Ends every rank of the job with `code` (does not return when it works). */
int32_t ngp_mpi_abort(int32_t code) {
  CALL(MPI_Abort(MPI_COMM_WORLD, code));
  return MPI_SUCCESS;
}

int32_t ngp_mpi_finalize(void) {
  if (node_comm != MPI_COMM_NULL) CALL(MPI_Comm_free(&node_comm));
  int finalized = 0;
  CALL(MPI_Finalized(&finalized));
  if (!finalized) CALL(MPI_Finalize());
  return MPI_SUCCESS;
}

}  // extern "C"
