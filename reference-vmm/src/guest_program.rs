//! The guest program, assembled with iced-x86 for 64-bit long mode.
//!
//! It uses only integer instructions, `mov`, `rep stos`/`repe scas`, `call`/`ret`, `hlt` and
//! `out`, the instructions this project's nested KVM runs reliably. Register use:
//! `rbx` = parameter block (constant), `r12` = loop counter/index, `r14` = sequence number of
//! the command being handled, `r15` = generation table.

#![forbid(unsafe_code)]

use iced_x86::code_asm::*;

use crate::error::{Error, Result};
use crate::guest_abi::{cmd, param, port, status, CODE_GPA, CODE_MAX, PARAM_GPA, STACK_TOP};

fn p(offset: u64) -> AsmMemoryOperand {
    qword_ptr(rbx + offset as i32)
}

fn asm_err(e: IcedError) -> Error {
    Error::Assemble(e.to_string())
}

/// Assembles the guest program for loading at [`CODE_GPA`].
pub fn assemble() -> Result<Vec<u8>> {
    let code = build().map_err(asm_err)?;
    if code.len() > CODE_MAX {
        return Err(Error::Assemble(format!(
            "program is {} bytes, room for {CODE_MAX}",
            code.len()
        )));
    }
    Ok(code)
}

/// Emits `rsi = ARG0`, `rcx = ARG1` and jumps to `fail` unless
/// `RESERVED_PAGES <= first`, `0 < count` and `first + count <= TOTAL_PAGES`.
fn emit_range_check(a: &mut CodeAssembler, fail: CodeLabel) -> std::result::Result<(), IcedError> {
    a.mov(rsi, p(param::CMD_ARG0))?;
    a.mov(rcx, p(param::CMD_ARG1))?;
    a.test(rcx, rcx)?;
    a.jz(fail)?;
    a.cmp(rsi, p(param::RESERVED_PAGES))?;
    a.jb(fail)?;
    a.mov(rax, p(param::TOTAL_PAGES))?;
    a.cmp(rcx, rax)?;
    a.ja(fail)?;
    a.sub(rax, rcx)?;
    a.cmp(rsi, rax)?;
    a.ja(fail)?;
    Ok(())
}

fn build() -> std::result::Result<Vec<u8>, IcedError> {
    let (tag_k1, tag_k2, tag_k3) = crate::guest_abi::TAG_CONSTANTS;
    let mut a = CodeAssembler::new(64)?;

    let mut main_loop = a.create_label();
    let mut write_phase = a.create_label();
    let mut write_next = a.create_label();
    let mut advance = a.create_label();
    let mut store_cursor = a.create_label();
    let mut delay = a.create_label();
    let mut delay_loop = a.create_label();
    let mut spin = a.create_label();
    let mut translate = a.create_label();
    let mut t_loop = a.create_label();
    let mut t_found = a.create_label();
    let mut t_fail = a.create_label();
    let mut write_page = a.create_label();
    let mut wp_sparse = a.create_label();
    let mut wp_head = a.create_label();
    let mut tag = a.create_label();
    let mut do_command = a.create_label();
    let mut cmd_done_ok = a.create_label();
    let mut cmd_done_status = a.create_label();
    let mut bad_range = a.create_label();
    let mut cmd_inflate = a.create_label();
    let mut inf_loop = a.create_label();
    let mut inf_next = a.create_label();
    let mut cmd_deflate = a.create_label();
    let mut def_loop = a.create_label();
    let mut def_next = a.create_label();
    let mut cmd_check = a.create_label();
    let mut chk_loop = a.create_label();
    let mut chk_not_balloon = a.create_label();
    let mut chk_written = a.create_label();
    let mut chk_sparse = a.create_label();
    let mut chk_good = a.create_label();
    let mut chk_bad = a.create_label();
    let mut chk_next = a.create_label();
    let mut chk_done = a.create_label();
    let mut cmd_stop = a.create_label();
    let mut stop_hlt = a.create_label();

    // Entry.
    a.mov(rsp, STACK_TOP)?;
    a.mov(rbx, PARAM_GPA)?;

    // Main loop: heartbeat, command, writes, delay.
    a.set_label(&mut main_loop)?;
    a.inc(p(param::HEARTBEAT))?;
    a.mov(rax, p(param::CMD_SEQ))?;
    a.cmp(rax, p(param::CMD_ACK))?;
    a.jne(do_command)?;

    a.set_label(&mut write_phase)?;
    a.mov(r12, p(param::PAGES_PER_LOOP))?;
    a.cmp(p(param::WS_COUNT), 0)?;
    a.je(delay)?;
    a.set_label(&mut write_next)?;
    a.test(r12, r12)?;
    a.jz(delay)?;
    a.dec(r12)?;
    a.mov(rdi, p(param::CURSOR))?;
    a.add(rdi, p(param::WS_FIRST))?;
    a.mov(r15, p(param::GEN_TABLE))?;
    a.mov(rdx, qword_ptr(r15 + rdi * 8))?;
    a.cmp(rdx, -1)?;
    a.je(advance)?; // ballooned: never touch it
    a.mov(rdx, p(param::GENERATION))?;
    a.mov(qword_ptr(r15 + rdi * 8), rdx)?;
    a.call(translate)?;
    a.call(write_page)?;
    a.inc(p(param::PAGES_WRITTEN))?;
    a.set_label(&mut advance)?;
    a.mov(rax, p(param::CURSOR))?;
    a.inc(rax)?;
    a.cmp(rax, p(param::WS_COUNT))?;
    a.jb(store_cursor)?;
    a.xor(eax, eax)?;
    a.inc(p(param::GENERATION))?;
    a.set_label(&mut store_cursor)?;
    a.mov(p(param::CURSOR), rax)?;
    a.jmp(write_next)?;

    a.set_label(&mut delay)?;
    // Idle (the VMM parks the vCPU) instead of spinning, when asked to.
    a.cmp(p(param::IDLE_US), 0)?;
    a.je(spin)?;
    a.mov(dx, port::IDLE as u32)?;
    a.out(dx, eax)?;
    a.jmp(main_loop)?;
    a.set_label(&mut spin)?;
    a.mov(rcx, p(param::DELAY_LOOPS))?;
    a.set_label(&mut delay_loop)?;
    a.test(rcx, rcx)?;
    a.jz(main_loop)?;
    a.dec(rcx)?;
    a.jmp(delay_loop)?;

    // translate: rdi = RAM page number -> rax = guest-physical address. Clobbers rsi, rcx.
    a.set_label(&mut translate)?;
    a.mov(rax, rdi)?;
    a.lea(rsi, qword_ptr(rbx + param::REGIONS as i32))?;
    a.mov(rcx, p(param::REGION_COUNT))?;
    a.set_label(&mut t_loop)?;
    a.test(rcx, rcx)?;
    a.jz(t_fail)?;
    a.cmp(rax, qword_ptr(rsi + 8))?;
    a.jb(t_found)?;
    a.sub(rax, qword_ptr(rsi + 8))?;
    a.add(rsi, 16)?;
    a.dec(rcx)?;
    a.jmp(t_loop)?;
    a.set_label(&mut t_found)?;
    a.shl(rax, 12)?;
    a.add(rax, qword_ptr(rsi))?;
    a.ret()?;
    a.set_label(&mut t_fail)?;
    a.mov(eax, 1)?;
    a.mov(dx, port::ERROR as u32)?;
    a.out(dx, eax)?;
    a.hlt()?;
    a.jmp(t_fail)?;

    // tag: r8 = page_tag(rdi, rdx). Clobbers r9.
    a.set_label(&mut tag)?;
    a.mov(r8, tag_k1)?;
    a.imul_2(r8, rdi)?;
    a.mov(r9, tag_k2)?;
    a.imul_2(r9, rdx)?;
    a.xor(r8, r9)?;
    a.mov(r9, tag_k3)?;
    a.xor(r8, r9)?;
    a.ret()?;

    // write_page: rax = gpa, rdi = page, rdx = generation. Clobbers rax, rcx, r8-r11.
    a.set_label(&mut write_page)?;
    a.mov(r10, rax)?;
    a.call(tag)?;
    a.cmp(p(param::FILL), 0)?;
    a.je(wp_sparse)?;
    a.mov(r11, rdi)?;
    a.lea(rdi, qword_ptr(r10 + 16))?;
    a.mov(rax, r8)?;
    a.mov(ecx, 510)?;
    a.rep().stosq()?;
    a.mov(rdi, r11)?;
    a.jmp(wp_head)?;
    a.set_label(&mut wp_sparse)?;
    a.mov(qword_ptr(r10 + 16), r8)?;
    a.mov(qword_ptr(r10 + 4088), r8)?;
    a.set_label(&mut wp_head)?;
    a.mov(qword_ptr(r10 + 8), rdx)?;
    a.mov(qword_ptr(r10), rdi)?;
    a.ret()?;

    // Commands.
    a.set_label(&mut do_command)?;
    a.mov(r14, rax)?;
    a.mov(rax, p(param::CMD))?;
    a.cmp(rax, cmd::INFLATE as i32)?;
    a.je(cmd_inflate)?;
    a.cmp(rax, cmd::DEFLATE as i32)?;
    a.je(cmd_deflate)?;
    a.cmp(rax, cmd::SELF_CHECK as i32)?;
    a.je(cmd_check)?;
    a.cmp(rax, cmd::STOP as i32)?;
    a.je(cmd_stop)?;
    a.mov(eax, status::UNKNOWN_COMMAND as u32)?;
    a.jmp(cmd_done_status)?;
    a.set_label(&mut bad_range)?;
    a.mov(eax, status::BAD_RANGE as u32)?;
    a.jmp(cmd_done_status)?;
    a.set_label(&mut cmd_done_ok)?;
    a.xor(eax, eax)?;
    a.set_label(&mut cmd_done_status)?;
    a.mov(p(param::CMD_STATUS), rax)?;
    a.mov(p(param::CMD_ACK), r14)?;
    a.jmp(write_phase)?;

    // Inflate: mark the range ballooned (stop using it), then tell the host.
    a.set_label(&mut cmd_inflate)?;
    emit_range_check(&mut a, bad_range)?;
    a.mov(r15, p(param::GEN_TABLE))?;
    a.mov(rdi, rsi)?;
    a.set_label(&mut inf_loop)?;
    a.cmp(qword_ptr(r15 + rdi * 8), -1)?;
    a.je(inf_next)?;
    a.mov(qword_ptr(r15 + rdi * 8), -1)?;
    a.inc(p(param::BALLOON_PAGES))?;
    a.set_label(&mut inf_next)?;
    a.inc(rdi)?;
    a.dec(rcx)?;
    a.jnz(inf_loop)?;
    a.mov(rax, p(param::CMD_ARG0))?;
    a.mov(p(param::REPORT_FIRST), rax)?;
    a.mov(rax, p(param::CMD_ARG1))?;
    a.mov(p(param::REPORT_COUNT), rax)?;
    a.mov(dx, port::BALLOON_INFLATE as u32)?;
    a.out(dx, eax)?;
    a.jmp(cmd_done_ok)?;

    // Deflate: tell the host first, then take the pages back (they read as zero).
    a.set_label(&mut cmd_deflate)?;
    emit_range_check(&mut a, bad_range)?;
    a.mov(p(param::REPORT_FIRST), rsi)?;
    a.mov(p(param::REPORT_COUNT), rcx)?;
    a.mov(dx, port::BALLOON_DEFLATE as u32)?;
    a.out(dx, eax)?;
    a.mov(r15, p(param::GEN_TABLE))?;
    a.mov(rdi, rsi)?;
    a.set_label(&mut def_loop)?;
    a.cmp(qword_ptr(r15 + rdi * 8), -1)?;
    a.jne(def_next)?;
    a.mov(qword_ptr(r15 + rdi * 8), 0)?;
    a.dec(p(param::BALLOON_PAGES))?;
    a.set_label(&mut def_next)?;
    a.inc(rdi)?;
    a.dec(rcx)?;
    a.jnz(def_loop)?;
    a.jmp(cmd_done_ok)?;

    // Self-check: walk the working set.
    a.set_label(&mut cmd_check)?;
    a.xor(eax, eax)?;
    a.mov(p(param::CHECK_OK), rax)?;
    a.mov(p(param::CHECK_ZERO), rax)?;
    a.mov(p(param::CHECK_BAD), rax)?;
    a.mov(p(param::CHECK_BALLOONED), rax)?;
    a.mov(p(param::CHECK_FIRST_BAD), -1)?;
    a.xor(r12d, r12d)?;
    a.set_label(&mut chk_loop)?;
    a.cmp(r12, p(param::WS_COUNT))?;
    a.jae(chk_done)?;
    a.mov(rdi, r12)?;
    a.add(rdi, p(param::WS_FIRST))?;
    a.mov(r15, p(param::GEN_TABLE))?;
    a.mov(rdx, qword_ptr(r15 + rdi * 8))?;
    a.cmp(rdx, -1)?;
    a.jne(chk_not_balloon)?;
    a.inc(p(param::CHECK_BALLOONED))?;
    a.jmp(chk_next)?;
    a.set_label(&mut chk_not_balloon)?;
    a.call(translate)?;
    a.mov(r10, rax)?;
    a.test(rdx, rdx)?;
    a.jnz(chk_written)?;
    // Never written (or given back by the balloon): all 512 words zero.
    a.mov(r11, rdi)?;
    a.mov(rdi, r10)?;
    a.mov(ecx, 512)?;
    a.xor(eax, eax)?;
    a.repe().scasq()?;
    a.mov(rdi, r11)?;
    a.jne(chk_bad)?;
    a.inc(p(param::CHECK_ZERO))?;
    a.jmp(chk_next)?;
    // Written in generation rdx: header, tag, body.
    a.set_label(&mut chk_written)?;
    a.cmp(qword_ptr(r10), rdi)?;
    a.jne(chk_bad)?;
    a.cmp(qword_ptr(r10 + 8), rdx)?;
    a.jne(chk_bad)?;
    a.call(tag)?;
    a.cmp(qword_ptr(r10 + 16), r8)?;
    a.jne(chk_bad)?;
    a.mov(r11, rdi)?;
    a.cmp(p(param::FILL), 0)?;
    a.je(chk_sparse)?;
    a.lea(rdi, qword_ptr(r10 + 24))?;
    a.mov(ecx, 509)?;
    a.mov(rax, r8)?;
    a.repe().scasq()?;
    a.mov(rdi, r11)?;
    a.jne(chk_bad)?;
    a.jmp(chk_good)?;
    a.set_label(&mut chk_sparse)?;
    a.cmp(qword_ptr(r10 + 4088), r8)?;
    a.jne(chk_bad)?;
    a.lea(rdi, qword_ptr(r10 + 24))?;
    a.mov(ecx, 508)?;
    a.xor(eax, eax)?;
    a.repe().scasq()?;
    a.mov(rdi, r11)?;
    a.jne(chk_bad)?;
    a.set_label(&mut chk_good)?;
    a.inc(p(param::CHECK_OK))?;
    a.jmp(chk_next)?;
    a.set_label(&mut chk_bad)?;
    a.inc(p(param::CHECK_BAD))?;
    a.cmp(p(param::CHECK_FIRST_BAD), -1)?;
    a.jne(chk_next)?;
    a.mov(p(param::CHECK_FIRST_BAD), rdi)?;
    a.set_label(&mut chk_next)?;
    a.inc(r12)?;
    a.jmp(chk_loop)?;
    a.set_label(&mut chk_done)?;
    a.mov(rax, p(param::CHECK_BAD))?;
    a.mov(dx, port::CHECK_DONE as u32)?;
    a.out(dx, eax)?;
    a.jmp(cmd_done_ok)?;

    // Stop: acknowledge, tell the host, halt for good.
    a.set_label(&mut cmd_stop)?;
    a.xor(eax, eax)?;
    a.mov(p(param::CMD_STATUS), rax)?;
    a.mov(p(param::CMD_ACK), r14)?;
    a.mov(dx, port::STOPPED as u32)?;
    a.out(dx, eax)?;
    a.set_label(&mut stop_hlt)?;
    a.hlt()?;
    a.jmp(stop_hlt)?;

    a.assemble(CODE_GPA)
}

#[cfg(test)]
mod tests {
    #[test]
    fn assembles_within_its_room() {
        let code = super::assemble().expect("assembles");
        assert!(!code.is_empty());
        assert!(code.len() <= crate::guest_abi::CODE_MAX);
    }
}
