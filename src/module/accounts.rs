//! The real system's users and groups ([`config::Host`]), for the config checks and the
//! daemon plan; tests use fakes.

use crate::config;

pub(crate) struct SystemAccounts;

impl config::Host for SystemAccounts {
    fn uid_of(&self, user: &str) -> Option<u32> {
        nix::unistd::User::from_name(user)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
    }
    fn gid_of(&self, group: &str) -> Option<u32> {
        nix::unistd::Group::from_name(group)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw())
    }
    fn primary_gid_of_uid(&self, uid: u32) -> Option<u32> {
        nix::unistd::User::from_uid(uid.into())
            .ok()
            .flatten()
            .map(|u| u.gid.as_raw())
    }
    fn home_of_uid(&self, uid: u32) -> Option<String> {
        nix::unistd::User::from_uid(uid.into())
            .ok()
            .flatten()
            .map(|u| u.dir.to_string_lossy().into_owned())
    }
    fn user_name_of_uid(&self, uid: u32) -> Option<String> {
        nix::unistd::User::from_uid(uid.into())
            .ok()
            .flatten()
            .map(|u| u.name)
    }
}
