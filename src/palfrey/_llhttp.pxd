# Only what _parser.pyx uses of vendor/llhttp/include/llhttp.h.
# Strict mode only: none of llhttp's leniency setters is declared here, on purpose.
from libc.stdint cimport uint8_t, uint16_t, uint64_t


cdef extern from "llhttp.h":
    ctypedef struct llhttp_t:
        void* data
        uint64_t content_length
        uint8_t method
        uint8_t http_major
        uint8_t http_minor
        uint8_t upgrade
        uint16_t flags

    ctypedef int (*llhttp_data_cb)(llhttp_t*, const char* at, size_t length) noexcept
    ctypedef int (*llhttp_cb)(llhttp_t*) noexcept

    ctypedef struct llhttp_settings_t:
        llhttp_cb on_message_begin
        llhttp_data_cb on_url
        llhttp_data_cb on_header_field
        llhttp_data_cb on_header_value
        llhttp_cb on_url_complete
        llhttp_cb on_header_field_complete
        llhttp_cb on_header_value_complete
        llhttp_cb on_headers_complete
        llhttp_data_cb on_body
        llhttp_cb on_message_complete

    ctypedef enum llhttp_errno_t:
        HPE_OK
        HPE_PAUSED
        HPE_PAUSED_UPGRADE
        HPE_USER

    ctypedef enum llhttp_type_t:
        HTTP_REQUEST

    enum:
        F_CHUNKED
        F_CONTENT_LENGTH
        F_TRANSFER_ENCODING
        HTTP_HEAD
        HTTP_CONNECT
        HTTP_OPTIONS
        HTTP_QUERY  # the last method llhttp 9.4 defines

    void llhttp_settings_init(llhttp_settings_t* settings)
    void llhttp_init(llhttp_t* parser, llhttp_type_t type, const llhttp_settings_t* settings)
    llhttp_errno_t llhttp_execute(llhttp_t* parser, const char* data, size_t len)
    int llhttp_should_keep_alive(const llhttp_t* parser)
    void llhttp_resume(llhttp_t* parser)
    void llhttp_resume_after_upgrade(llhttp_t* parser)
    const char* llhttp_get_error_pos(const llhttp_t* parser)
    const char* llhttp_get_error_reason(const llhttp_t* parser)
    const char* llhttp_method_name(uint8_t method)
