# Install layout and the Debian package (docs/systemd.md). Included at the end of the top
# CMakeLists.txt, which installs the binaries (sbin/esad, bin/esactl).
#
#   cmake -S . -B build/package -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
#         -DESAD_TESTS=OFF
#   cmake --build build/package && (cd build/package && cpack -G DEB)
#
# cpack writes esad_VERSION_ARCH.deb (stripped binaries) and esad-dbgsym_VERSION_ARCH.ddeb
# (their detached debug symbols; empty without -g, so package a RelWithDebInfo build).
#
# With the prefix /usr the configuration goes to /etc/esad (GNUInstallDirs' rule for
# /usr); with any other prefix it stays below the prefix (PREFIX/etc/esad), so
# `cmake --install --prefix DIR` never writes outside DIR.
include(GNUInstallDirs)

if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
    set(ESAD_CONFIG_DIR "/etc/esad")
else()
    set(ESAD_CONFIG_DIR "${CMAKE_INSTALL_SYSCONFDIR}/esad")
endif()
set(ESAD_UNIT_DIR "lib/systemd/system")
set(ESAD_SYSUSERS_DIR "lib/sysusers.d")
set(ESAD_TMPFILES_DIR "lib/tmpfiles.d")
set(ESAD_DOC_DIR "${CMAKE_INSTALL_DATAROOTDIR}/doc/esad")
set(ESAD_COMPLETION_DIR "${CMAKE_INSTALL_DATAROOTDIR}/bash-completion/completions")

# --- systemd integration --------------------------------------------------------------------
install(FILES systemd/esad.service systemd/esad.socket DESTINATION ${ESAD_UNIT_DIR})
# The Delivery Status page (docs/web.md); not enabled.
install(FILES systemd/esad-web.service DESTINATION ${ESAD_UNIT_DIR})
install(FILES systemd/esad.sysusers.conf DESTINATION ${ESAD_SYSUSERS_DIR} RENAME esad.conf)
install(FILES systemd/esad.tmpfiles.conf DESTINATION ${ESAD_TMPFILES_DIR} RENAME esad.conf)

# --- configuration: the live file (a dpkg conffile) and a pristine copy --------------------
# 0644 as shipped; the tmpfiles.d entry makes it root:esad 0640 once the esad group exists.
install(FILES systemd/esad.toml DESTINATION ${ESAD_CONFIG_DIR})
install(FILES systemd/esad.toml DESTINATION ${ESAD_DOC_DIR} RENAME esad.toml.example)
install(FILES docs/install.md docs/systemd.md docs/metrics.md DESTINATION ${ESAD_DOC_DIR})
install(FILES docs/capture.md docs/web.md DESTINATION ${ESAD_DOC_DIR})

# --- man pages (compressed, as Debian ships them), changelog, copyright, completion --------
set(ESAD_PACKAGE_MAINTAINER "esad maintainers <maintainers@users.noreply.r-seed-c989d5b6.example>"
    CACHE STRING "Maintainer of the Debian package (name <address>)")
set(ESAD_DOC_BUILD "${CMAKE_BINARY_DIR}/doc")
configure_file(${CMAKE_CURRENT_LIST_DIR}/deb/changelog.in ${ESAD_DOC_BUILD}/changelog @ONLY)
configure_file(${CMAKE_CURRENT_LIST_DIR}/deb/copyright.in ${ESAD_DOC_BUILD}/copyright @ONLY)
set(ESAD_GZ_OUTPUTS "")
foreach(doc docs/esactl.1 docs/esad.toml.5 docs/esad.8 docs/esad-web.8
            ${ESAD_DOC_BUILD}/changelog)
    get_filename_component(name ${doc} NAME)
    if(NOT IS_ABSOLUTE ${doc})
        set(doc ${CMAKE_SOURCE_DIR}/${doc})
    endif()
    # -n: no name or time stamp in the header, so the package is reproducible.
    add_custom_command(OUTPUT ${ESAD_DOC_BUILD}/${name}.gz
                       COMMAND gzip -9n -c ${doc} > ${ESAD_DOC_BUILD}/${name}.gz
                       DEPENDS ${doc} VERBATIM)
    list(APPEND ESAD_GZ_OUTPUTS ${ESAD_DOC_BUILD}/${name}.gz)
endforeach()
add_custom_target(esad_docs ALL DEPENDS ${ESAD_GZ_OUTPUTS})
install(FILES ${ESAD_DOC_BUILD}/esactl.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${ESAD_DOC_BUILD}/esad.toml.5.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man5)
install(FILES ${ESAD_DOC_BUILD}/esad.8.gz ${ESAD_DOC_BUILD}/esad-web.8.gz
        DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES ${ESAD_DOC_BUILD}/changelog.gz ${ESAD_DOC_BUILD}/copyright
        DESTINATION ${ESAD_DOC_DIR})
install(FILES docs/esactl.bash-completion DESTINATION ${ESAD_COMPLETION_DIR} RENAME esactl)

# --- CPack: one .deb for Debian 12 ----------------------------------------------------------
# The maintainer scripts create the user (systemd-sysusers) and directories
# (systemd-tmpfiles), enable nothing, and follow Debian's conventions for units
# (deb-systemd-helper, deb-systemd-invoke; docs/install.md).
set(ESAD_SYSUSERS_FULL "${CMAKE_INSTALL_PREFIX}/${ESAD_SYSUSERS_DIR}/esad.conf")
set(ESAD_TMPFILES_FULL "${CMAKE_INSTALL_PREFIX}/${ESAD_TMPFILES_DIR}/esad.conf")
if(IS_ABSOLUTE "${ESAD_CONFIG_DIR}")
    set(ESAD_CONFIG_DIR_FULL "${ESAD_CONFIG_DIR}")
else()
    set(ESAD_CONFIG_DIR_FULL "${CMAKE_INSTALL_PREFIX}/${ESAD_CONFIG_DIR}")
endif()
set(ESAD_CONFIG_FULL "${ESAD_CONFIG_DIR_FULL}/esad.toml")
# esactl finds the installed daemon through these (ctl/socket_path.h).
set(ESAD_ESACTL_FULL "${CMAKE_INSTALL_FULL_BINDIR}/esactl")
configure_file(${CMAKE_SOURCE_DIR}/common/install_paths.h.in
               ${CMAKE_BINARY_DIR}/generated/esad_install_paths.h @ONLY)
set(ESAD_CAPTURE_FULL "${CMAKE_INSTALL_FULL_LIBEXECDIR}/esad/esad-capture")
set(ESAD_DEB_DIR "${CMAKE_BINARY_DIR}/deb")
foreach(script postinst prerm postrm conffiles)
    configure_file(${CMAKE_CURRENT_LIST_DIR}/deb/${script}.in ${ESAD_DEB_DIR}/${script} @ONLY)
endforeach()

set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "esad")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_VENDOR "esad")
set(CPACK_PACKAGE_CONTACT "${ESAD_PACKAGE_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${ESAD_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "outbound mail delivery daemon (MTA) with an ESA-style CLI")
# The extended description as control-file lines (each under 80 columns).
set(CPACK_PACKAGE_DESCRIPTION
    "esad accepts mail from applications over SMTP, spools each message durably\n"
    "before it answers 250, and delivers it to each destination's mail servers\n"
    "with retries, bounces and per-destination controls. esactl is its operator\n"
    "CLI. The package installs a hardened systemd unit that is not enabled.")
string(JOIN "" CPACK_PACKAGE_DESCRIPTION ${CPACK_PACKAGE_DESCRIPTION})
set(CPACK_PACKAGING_INSTALL_PREFIX "${CMAKE_INSTALL_PREFIX}")
set(CPACK_DEBIAN_FILE_NAME "DEB-DEFAULT")
set(CPACK_DEBIAN_PACKAGE_NAME "esad")
set(CPACK_DEBIAN_PACKAGE_SECTION "mail")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
set(CPACK_DEBIAN_PACKAGE_DEPENDS
    "libc6 (>= 2.36), libstdc++6 (>= 12), libuv1, libc-ares2, libssl3, libspdlog1.10, libfmt9, libsystemd0, libedit2, libidn2-0, libpcap0.8, libmicrohttpd12")
# systemd-sysusers / systemd-tmpfiles create the user and directories in postinst.
# libcap2-bin: setcap gives esad-capture CAP_NET_RAW (docs/capture.md).
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "systemd, libcap2-bin")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${ESAD_DEB_DIR}/postinst;${ESAD_DEB_DIR}/prerm;${ESAD_DEB_DIR}/postrm;${ESAD_DEB_DIR}/conffiles")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
# Stripped binaries in esad, their debug symbols in esad-dbgsym (a .ddeb, as Debian's).
set(CPACK_DEBIAN_DEBUGINFO_PACKAGE ON)
include(CPack)
