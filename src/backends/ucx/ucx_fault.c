/* ucx_fault.c - fault injection (src/util/fault.h) for the UCX calls the
 * backend makes: the --wrap wrappers fail them with UCS_ERR_NO_MEMORY at
 * the "ucx" site's rate, as UCX fails them when it runs out of resources. */
#include "ucx.h"

ucs_status_ptr_t __real_ucp_put_nbx(ucp_ep_h ep, const void *buffer,
                                    size_t count, uint64_t remote_addr,
                                    ucp_rkey_h rkey,
                                    const ucp_request_param_t *param);
ucs_status_ptr_t __real_ucp_get_nbx(ucp_ep_h ep, void *buffer, size_t count,
                                    uint64_t remote_addr, ucp_rkey_h rkey,
                                    const ucp_request_param_t *param);
ucs_status_ptr_t __real_ucp_am_send_nbx(ucp_ep_h ep, unsigned id,
                                        const void *header,
                                        size_t header_length,
                                        const void *buffer, size_t count,
                                        const ucp_request_param_t *param);
ucs_status_ptr_t __real_ucp_ep_flush_nbx(ucp_ep_h ep,
                                         const ucp_request_param_t *param);
ucs_status_t __real_ucp_mem_map(ucp_context_h context,
                                const ucp_mem_map_params_t *params,
                                ucp_mem_h *memh_p);

ucs_status_ptr_t __wrap_ucp_put_nbx(ucp_ep_h ep, const void *buffer,
                                    size_t count, uint64_t remote_addr,
                                    ucp_rkey_h rkey,
                                    const ucp_request_param_t *param);
ucs_status_ptr_t __wrap_ucp_get_nbx(ucp_ep_h ep, void *buffer, size_t count,
                                    uint64_t remote_addr, ucp_rkey_h rkey,
                                    const ucp_request_param_t *param);
ucs_status_ptr_t __wrap_ucp_am_send_nbx(ucp_ep_h ep, unsigned id,
                                        const void *header,
                                        size_t header_length,
                                        const void *buffer, size_t count,
                                        const ucp_request_param_t *param);
ucs_status_ptr_t __wrap_ucp_ep_flush_nbx(ucp_ep_h ep,
                                         const ucp_request_param_t *param);
ucs_status_t __wrap_ucp_mem_map(ucp_context_h context,
                                const ucp_mem_map_params_t *params,
                                ucp_mem_h *memh_p);

ucs_status_ptr_t
__wrap_ucp_put_nbx(ucp_ep_h ep, const void *buffer, size_t count,
                   uint64_t remote_addr, ucp_rkey_h rkey,
                   const ucp_request_param_t *param)
{
    if (nxl__fault_hit(NXL__FI_UCX)) {
        return UCS_STATUS_PTR(UCS_ERR_NO_MEMORY);
    }
    return __real_ucp_put_nbx(ep, buffer, count, remote_addr, rkey, param);
}

ucs_status_ptr_t
__wrap_ucp_get_nbx(ucp_ep_h ep, void *buffer, size_t count,
                   uint64_t remote_addr, ucp_rkey_h rkey,
                   const ucp_request_param_t *param)
{
    if (nxl__fault_hit(NXL__FI_UCX)) {
        return UCS_STATUS_PTR(UCS_ERR_NO_MEMORY);
    }
    return __real_ucp_get_nbx(ep, buffer, count, remote_addr, rkey, param);
}

ucs_status_ptr_t
__wrap_ucp_am_send_nbx(ucp_ep_h ep, unsigned id, const void *header,
                       size_t header_length, const void *buffer, size_t count,
                       const ucp_request_param_t *param)
{
    if (nxl__fault_hit(NXL__FI_UCX)) {
        return UCS_STATUS_PTR(UCS_ERR_NO_MEMORY);
    }
    return __real_ucp_am_send_nbx(ep, id, header, header_length, buffer, count,
                                  param);
}

ucs_status_ptr_t
__wrap_ucp_ep_flush_nbx(ucp_ep_h ep, const ucp_request_param_t *param)
{
    if (nxl__fault_hit(NXL__FI_UCX)) {
        return UCS_STATUS_PTR(UCS_ERR_NO_MEMORY);
    }
    return __real_ucp_ep_flush_nbx(ep, param);
}

ucs_status_t
__wrap_ucp_mem_map(ucp_context_h context, const ucp_mem_map_params_t *params,
                   ucp_mem_h *memh_p)
{
    if (nxl__fault_hit(NXL__FI_UCX)) {
        return UCS_ERR_NO_MEMORY;
    }
    return __real_ucp_mem_map(context, params, memh_p);
}
